"""`python -m gateway`: check the environment, then serve on 0.0.0.0:GATEWAY_PORT."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from gateway.config import ConfigError, load


class _NoQueryStrings(logging.Filter):
    """uvicorn's access log line without query strings: `/auth/callback?code=...` carries an
    authorization code, `/authorize?...` a PKCE challenge and state; only paths are logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        args: Any = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], args[2].split("?", 1)[0], *args[3:])
        return True


def main() -> int:
    try:
        settings = load(os.environ)
    except ConfigError as error:
        for line in str(error).splitlines():
            print(f"gateway: {line}", file=sys.stderr, flush=True)
        return 2

    import uvicorn

    from gateway.app import Gateway

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    # Library loggers that would print request details at INFO (azure-core's HTTP policy logs
    # headers and URLs; its Authorization header is redacted, but keep it quiet).
    logging.getLogger("azure").setLevel(logging.WARNING)
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").addFilter(_NoQueryStrings())
    gateway = Gateway(settings)
    uvicorn.run(
        gateway.app,
        host="0.0.0.0",
        port=settings.port,
        log_config=None,
        # Redirects and metadata are built from GATEWAY_PUBLIC_URL, never from request headers.
        proxy_headers=False,
        timeout_graceful_shutdown=10,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
