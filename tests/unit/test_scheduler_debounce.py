"""The completion debounce applies to bursts only: a request after a pause goes to the model at once.

The scheduler runs with its real model host (worker thread, job queue); the work handed to the
model is a plain function, since what is checked is when it is handed over. The debounce is
stretched to 30 s so that "waited for it" and "did not" cannot be confused on a slow machine.
"""

from __future__ import annotations

import asyncio

import pytest

from lsp_server import scheduler as scheduler_mod
from lsp_server.model_host import ModelHost
from lsp_server.scheduler import Scheduler


@pytest.fixture
def ready_scheduler(monkeypatch):
    monkeypatch.setattr(scheduler_mod, "DEBOUNCE_S", 30.0)
    host = ModelHost()
    host.state = "ready"
    return Scheduler(host)


def test_a_lone_request_is_not_debounced_and_a_burst_is(ready_scheduler):
    ran: list[str] = []

    def work(label):
        def run(job):
            ran.append(label)
            return label
        return run

    async def scenario():
        sched = ready_scheduler
        # After a pause (here: the first request for the document) the model runs at once.
        assert await asyncio.wait_for(sched.completion("file:///a.py", work("first")), 10) == "first"
        # A request right behind another one for the same document waits out the debounce
        # (30 s here); the one it follows is answered empty at once.
        await asyncio.sleep(0)
        lone = asyncio.ensure_future(sched.completion("file:///b.py", work("b")))
        burst = asyncio.ensure_future(sched.completion("file:///b.py", work("b-again")))
        assert await asyncio.wait_for(lone, 10) is None  # superseded by the burst's second request
        await asyncio.sleep(1.0)
        assert not burst.done()  # still in its debounce
        burst.cancel()
        with pytest.raises(asyncio.CancelledError):
            await burst
        return sched.counters

    counters = asyncio.run(scenario())
    assert "first" in ran and "b-again" not in ran
    assert counters.superseded == 1 and counters.cancelled == 1
