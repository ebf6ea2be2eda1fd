"""Calls postgres-mcp's execute_sql tool over SSE, as an MCP client does, at a steady pace.

Runs in the drill's postgres-mcp virtualenv (it needs the `mcp` package). Prints one
JSON line per call: {"t": epoch seconds, "ok": bool, "ms": duration, "detail": text}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from mcp import ClientSession
from mcp.client.sse import sse_client


async def drive(url: str, sql: str, interval: float, duration: float) -> None:
    deadline = time.monotonic() + duration
    async with sse_client(url) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        while time.monotonic() < deadline:
            started = time.time()
            try:
                result = await asyncio.wait_for(session.call_tool("execute_sql", {"sql": sql}), timeout=60)
                text = " ".join(getattr(part, "text", "") for part in result.content)
                ok = not result.isError and not text.startswith("Error")
            except Exception as error:  # noqa: BLE001 (any failure of a call is a failed call)
                ok, text = False, f"{type(error).__name__}: {error}"
            print(
                json.dumps({"t": started, "ok": ok, "ms": (time.time() - started) * 1000, "detail": text[:300]}),
                flush=True,
            )
            await asyncio.sleep(max(0.0, interval - (time.time() - started)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--sql", default="SELECT count(*) AS orders FROM orders")
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--duration", type=float, default=30.0)
    arguments = parser.parse_args()
    asyncio.run(drive(arguments.url, arguments.sql, arguments.interval, arguments.duration))


if __name__ == "__main__":
    main()
