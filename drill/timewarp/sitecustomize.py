"""Compresses psycopg_pool's clock for the expiry drill, without touching postgres-mcp.

Loaded by the drill's postgres-mcp process through PYTHONPATH. postgres-mcp builds its
pool with psycopg_pool's defaults (connections replaced every hour, 30 s to wait for
one); the drill sets shorter defaults so that an hour of token expiries fits in seconds.
Only defaults change: every code path in postgres-mcp and psycopg_pool stays the same.
"""

import os

import psycopg_pool

_DEFAULTS = {
    "max_lifetime": float(os.environ.get("DRILL_POOL_MAX_LIFETIME", "3600")),
    "timeout": float(os.environ.get("DRILL_POOL_TIMEOUT", "30")),
}
_original_init = psycopg_pool.AsyncConnectionPool.__init__


def _init_with_drill_defaults(self: object, *args: object, **kwargs: object) -> None:
    for name, value in _DEFAULTS.items():
        kwargs.setdefault(name, value)
    _original_init(self, *args, **kwargs)


psycopg_pool.AsyncConnectionPool.__init__ = _init_with_drill_defaults
