"""The gateway's store check (gateway/store.py `StoreCheck`, served at /healthz/store), in the gateway's own
virtualenv with a stand-in table client and clock: one read answers every caller for STORE_CHECK_SECONDS,
concurrent callers share it, a failure is reported with the table's name and is read again after the period.
The route itself, against Azurite, is in tests/test_gateway_end_to_end.py.
"""

from __future__ import annotations

import pytest

from testing.gateway_stack import run_in_gateway_venv

pytestmark = pytest.mark.drill

SCRIPT = r"""
import asyncio, json
from azure.core.exceptions import HttpResponseError
from gateway.store import StoreCheck


class Table:
    table_name = "gatewaySignIns"

    def __init__(self):
        self.fail = False
        self.calls = []

    def list_entities(self, **kwargs):
        self.calls.append(kwargs)
        table = self

        async def entities():
            await asyncio.sleep(0.01)
            if table.fail:
                text = "This request is not authorized to perform this operation.\nRequestId:x"
                raise HttpResponseError(message=text)
            yield {"PartitionKey": "p"}

        return entities()


async def main():
    now = [1000.0]
    table = Table()
    check = StoreCheck(table, ttl=30.0, clock=lambda: now[0])
    out = {}
    answers = await asyncio.gather(*(check.check() for _ in range(5)))
    out["shared"] = check.reads == 1 and all(a == (None, 0.0) for a in answers)
    out["select"] = table.calls[0] == {"results_per_page": 1, "select": ["PartitionKey"]}
    table.fail = True
    now[0] += 29
    out["cached"] = await check.check() == (None, 29.0) and check.reads == 1
    now[0] += 1
    problem, age = await check.check()
    out["failure"] = problem
    out["read_again"] = check.reads == 2 and age == 0.0
    table.fail = False
    now[0] += 10
    out["failure_cached"] = (await check.check())[0] == problem and check.reads == 2
    now[0] += 20
    out["recovered"] = await check.check() == (None, 0.0) and check.reads == 3
    print(json.dumps(out))


asyncio.run(main())
"""


def test_the_store_check_reads_once_per_period_and_reports_the_table() -> None:
    out = run_in_gateway_venv(SCRIPT)
    assert out["shared"] and out["select"] and out["cached"], out
    assert out["failure"].startswith("table gatewaySignIns: HttpResponseError: This request is not authorized"), out
    assert "RequestId" not in out["failure"]  # the first line only
    assert out["read_again"] and out["failure_cached"] and out["recovered"], out
