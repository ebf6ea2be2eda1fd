"""The gateway's shared backend session (gateway/backend.py) under failed pings, in the gateway's own virtualenv
(Python 3.12, fastmcp): one slow ping must not drop the session that every call in flight shares; it is dropped
when its task has ended or after FAILED_PINGS_BEFORE_DROP failed pings in a row, and readiness (`check`) reports
every failure at once. The session is a stand-in with fastmcp's surface (`is_connected`, the session task,
`ping`, `close`), so a ping can be made to hang or the session to die on demand.
"""

from __future__ import annotations

import pytest

from testing.gateway_stack import run_in_gateway_venv

pytestmark = pytest.mark.drill

SCRIPT = r"""
import asyncio, json, types
from gateway import backend

backend.PING_TIMEOUT = 0.05


class Session:
    def __init__(self):
        self.task = asyncio.get_running_loop().create_task(asyncio.sleep(3600))
        self._session_state = types.SimpleNamespace(session_task=self.task)
        self.slow = False
        self.dies = False
        self.closed = False

    def is_connected(self):
        return not self.closed

    async def __aenter__(self):
        return self

    async def ping(self):
        if self.dies:
            self.task.cancel()
            await asyncio.sleep(0)
            raise ConnectionError("the SSE stream ended")
        if self.slow:
            await asyncio.sleep(1)
        return True

    async def close(self):
        self.closed = True
        self.task.cancel()


async def main():
    out = {}
    b = backend.Backend("http://127.0.0.1:1/sse")
    b._new_client = Session
    first = await b.client()
    first.slow = True
    problems = [await b.check(), await b.check()]
    await asyncio.sleep(0.05)
    out["kept_after_two"] = (await b.client()) is first and not first.closed and b.connects == 1
    out["reported"] = all(p and "did not answer a ping" in p for p in problems)
    first.slow = False
    out["answers"] = await b.check() is None
    first.slow = True
    await b.check(); await b.check()
    out["count_reset_by_an_answer"] = (await b.client()) is first and b.failed_pings == 2
    out["third_in_a_row"] = await b.check()
    await asyncio.sleep(0.05)
    second = await b.client()
    out["dropped_after_three"] = second is not first and first.closed and b.connects == 2
    second.dies = True
    out["dead"] = await b.check()
    await asyncio.sleep(0.05)
    third = await b.client()
    out["dropped_when_dead"] = third is not second and second.closed and b.connects == 3
    out["fresh_answers"] = await b.check() is None
    await b.stop()
    print(json.dumps(out))


asyncio.run(main())
"""


def test_a_slow_ping_keeps_the_shared_session_and_three_in_a_row_or_a_dead_one_drop_it() -> None:
    out = run_in_gateway_venv(SCRIPT)
    assert out["reported"], out  # readiness says so at the first failed ping
    assert out["kept_after_two"], out  # but the session, and the calls in flight on it, stay
    assert out["answers"] and out["count_reset_by_an_answer"], out
    assert "did not answer a ping" in out["third_in_a_row"] and out["dropped_after_three"], out
    assert out["dead"] and out["dropped_when_dead"], out
    assert out["fresh_answers"], out
