"""What a sidecar program's container receives: its code, without comments or docstrings.

A program ships as `python -c <source>`, so the source is part of the Container App's template,
and any change to the template's containers is a revision-scope change: it creates a new
revision (Microsoft Learn, "Revisions in Azure Container Apps"). Shipping the file verbatim
made a comment edit roll one. `shipped_source` parses the file and writes it back with
`ast.unparse`: comments are gone, docstrings too, except the first line of the module's
docstring (the program's --help description). What remains is what runs, so a new revision
means a change of code.

`content_digest` names that code in a few characters. It goes on the sidecar as an
environment variable, so that a revision's template says which program it runs: a new digest
in a preview is a change of the program, and the same digest is the same program. (Not as the
revision suffix: a suffix names one revision and the platform refuses to create a second one
with it, so a suffix derived from the program alone would fail every other template change.)

ast.unparse's layout can differ between Python minor versions; the pipelines pin one (3.11).
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

DIGEST_LENGTH = 12  # hex characters of SHA-256: enough to tell programs apart at a glance


def _without_docstring(body: list[ast.stmt], keep_first_line: bool = False) -> list[ast.stmt]:
    if not (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)):
        return body
    docstring = body[0].value.value
    if not isinstance(docstring, str):
        return body
    if keep_first_line:
        return [ast.Expr(ast.Constant(docstring.splitlines()[0])), *body[1:]]
    return body[1:] or [ast.Pass()]


@functools.lru_cache(maxsize=8)
def strip(source: str) -> str:
    """The program's code: comments dropped by parsing, docstrings dropped from the tree.

    Cached by text: every declaration of the app ships the same program, and a parse costs ~0.1 s."""
    tree = ast.parse(source)
    tree.body = _without_docstring(tree.body, keep_first_line=True)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            node.body = _without_docstring(node.body)
    return ast.unparse(tree) + "\n"


def shipped_source(program: Path) -> str:
    """The text a sidecar runs as `python -c`: the program's file, stripped."""
    return strip(program.read_text(encoding="utf-8"))


def content_digest(source: str) -> str:
    """A short name for shipped code: the first characters of its SHA-256."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:DIGEST_LENGTH]
