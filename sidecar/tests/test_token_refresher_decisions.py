"""The token refresher's pure decisions, in-process, and what shipping it keeps and drops."""

from __future__ import annotations

import pytest

from sidecar import token_refresher
from testing.identity_endpoint import RESOURCE

pytestmark = pytest.mark.unit


def test_parse_token_accepts_azure_answers() -> None:
    now = 1_800_000_000.0
    token = token_refresher.parse_token(
        b'{"access_token":"eyJ0.eyJ1.c2ln","expires_on":"1800003600","resource":"https://ossrdbms-aad.database.windows.net/",'
        b'"token_type":"Bearer"}',
        RESOURCE,
        now,
    )
    assert token == token_refresher.Token("eyJ0.eyJ1.c2ln", 1_800_003_600.0)
    assert (
        token_refresher.parse_token(b'{"access_token":"a.b.c","expires_on":1800003600}', RESOURCE, now).expires_on
        == 1_800_003_600
    )


def test_password_file_line_escapes_separators() -> None:
    line = token_refresher.password_file_line("tok", {"PGHOST": "h:1", "PGUSER": "a\\b"})
    assert line == "h\\:1:*:*:a\\\\b:tok\n"


def test_next_refresh_delay_is_bounded() -> None:
    token = token_refresher.Token("t", expires_on=1000.0)
    assert token_refresher.next_refresh_delay(token, now=0.0, margin=100, min_interval=30, max_interval=3600) == 900
    assert token_refresher.next_refresh_delay(token, now=950.0, margin=100, min_interval=30, max_interval=3600) == 30
    long_lived = token_refresher.Token("t", expires_on=86_400.0)
    assert token_refresher.next_refresh_delay(long_lived, 0.0, 900, 30, 3600) == 3600


def test_backoff_grows_and_is_capped() -> None:
    delays = [token_refresher.backoff_delay(n, base=1, cap=60) for n in range(1, 12)]
    assert delays[0] <= 1 and delays[3] > 5 and max(delays) <= 60


def test_jwt_expiry_reads_the_exp_claim_and_nothing_else() -> None:
    from testing.identity_endpoint import jwt_like_token

    assert token_refresher.jwt_expiry(jwt_like_token(1_800_000_000.0, 1_799_990_000.0, 1)) == 1_800_000_000.0
    for not_a_jwt in ("a.b.c", "abc", "eyJ0eXAiOiJKV1QifQ.eyJleHAiOiJzb29uIn0.sig", "x.eyJleHAiOnRydWV9.y"):
        assert token_refresher.jwt_expiry(not_a_jwt) is None, not_a_jwt


PROGRAM = '''"""prog: the first line, kept for --help.

The rest of the module's docstring.
"""

import sys  # a comment on an import


class Settings:
    """A class docstring."""


def main() -> int:
    """A function docstring."""
    # a comment in a body
    return len(sys.argv)  # a trailing comment
'''


def test_shipping_keeps_the_code_and_the_description_and_drops_the_rest() -> None:
    from sidecar.shipping import content_digest, strip

    shipped = strip(PROGRAM)
    for dropped in ("comment", "The rest", "A class docstring", "A function docstring"):
        assert dropped not in shipped, dropped
    namespace: dict[str, object] = {}
    exec(compile(shipped, "<shipped>", "exec"), namespace)  # noqa: S102 (the test's own text)
    assert namespace["__doc__"] == "prog: the first line, kept for --help."
    assert callable(namespace["main"]) and isinstance(namespace["Settings"], type)
    assert strip(PROGRAM.replace("# a comment in a body", "# reworded")) == shipped
    assert content_digest(strip(PROGRAM.replace("len(sys.argv)", "len(sys.argv) - 1"))) != content_digest(shipped)
