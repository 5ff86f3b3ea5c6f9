"""An inline completion sent while the model loads waits for it (issue #19, part 1).

The scheduler runs with its real model host, and the loads are the host's real `load` of the tiny
GPT-2-vocabulary checkpoint of the generation tests (float32 on the CPU, nothing compiled), so
"ready", "error" and the order of queued loads come from the code the server runs. To hold a load
back until a request is waiting, a gate job (a plain function blocked on a `threading.Event`) sits
in front of it on the worker's queue; the gate is the only stand-in. What a completion does on
the model is a plain function too: it records which model it ran on.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from lsp_server.model_host import Job, ModelHost
from lsp_server.scheduler import Scheduler
from tests.runtime.test_generation import tiny_checkpoint  # noqa: F401 - the fixture

URI = "file:///project/a.py"
WAIT_S = 600.0  # far longer than any test here takes: a request that ends did not run out of time
END_S = 120.0  # the bound on each awaited outcome (a slow shared machine loads the tiny model in seconds)


class Gate:
    """A job that holds the worker until opened (so a load queued behind it has not started)."""

    def __init__(self, host: ModelHost) -> None:
        self.event = threading.Event()
        self.job = host.submit("completion", lambda job: self.event.wait(END_S))

    def open(self) -> None:
        self.event.set()


def start_load(sched: Scheduler, ref, cache) -> Job:
    """What `QuillServer.load_model` does: queue the host's load and let the scheduler watch it."""
    job = sched.host.load(str(ref), device="cpu", precision="float32", cache_dir=cache, progress=lambda *p: None)
    sched.watch_load(job)
    return job


def model_work(host: ModelHost, ran: list):
    def run(job: Job):
        ran.append(host.loaded)
        return "suggestion"
    return run


async def until(predicate) -> None:
    """Let the event loop run until `predicate()` holds (steps on the loop only, no threads)."""
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("the event loop never reached the awaited state")


async def settled(job: Job):
    return await asyncio.wait_for(asyncio.wrap_future(job.future), END_S)


def gated_load(source, cache):
    """A host whose worker is held by a gate, a scheduler, the list of models the work ran on,
    the gate, and a load of `source` queued behind it (call on the running loop)."""
    host = ModelHost()
    sched = Scheduler(host)
    gate = Gate(host)
    return host, sched, [], gate, start_load(sched, source, cache)


@pytest.fixture
def checkpoint(tiny_checkpoint):  # noqa: F811
    return tiny_checkpoint[0]


def test_a_request_waits_for_the_load_and_runs_on_the_loaded_model(checkpoint, tmp_path):
    async def scenario():
        host, sched, ran, gate, load = gated_load(checkpoint, tmp_path)
        request = asyncio.ensure_future(sched.completion(URI, model_work(host, ran), WAIT_S))
        await until(lambda: sched.waiting == 1)
        assert not request.done() and ran == []
        gate.open()
        text = await asyncio.wait_for(request, END_S)
        return text, ran, (await settled(load)), sched

    text, ran, loaded, sched = asyncio.run(scenario())
    assert text == "suggestion"
    assert ran == [loaded]  # ran once, on the model that the load made
    assert sched.counters.not_ready == 0 and sched.counters.generated == 1 and sched.waiting == 0


def test_a_request_before_any_load_waits_for_the_first_one(checkpoint, tmp_path):
    async def scenario():
        host = ModelHost()
        sched, ran = Scheduler(host), []
        assert host.state == "starting"
        request = asyncio.ensure_future(sched.completion(URI, model_work(host, ran), WAIT_S))
        await until(lambda: sched.waiting == 1)
        load = start_load(sched, checkpoint, tmp_path)
        return await asyncio.wait_for(request, END_S), ran, await settled(load)

    text, ran, loaded = asyncio.run(scenario())
    assert text == "suggestion" and ran == [loaded]


def test_a_zero_bound_answers_empty_at_once_as_before(checkpoint, tmp_path):
    async def scenario():
        host, sched, ran, gate, load = gated_load(checkpoint, tmp_path)
        text = await sched.completion(URI, model_work(host, ran), 0.0)
        state = host.state
        gate.open()
        await settled(load)
        return text, state, ran, sched.counters

    text, state, ran, counters = asyncio.run(scenario())
    assert text is None and state == "loading" and ran == []
    assert counters.not_ready == 1


def test_the_bound_passing_answers_empty(checkpoint, tmp_path):
    async def scenario():
        host, sched, ran, gate, load = gated_load(checkpoint, tmp_path)
        text = await asyncio.wait_for(sched.completion(URI, model_work(host, ran), 0.3), END_S)
        state = host.state
        gate.open()
        await settled(load)
        return text, state, ran, sched

    text, state, ran, sched = asyncio.run(scenario())
    assert text is None and state == "loading" and ran == []
    assert sched.counters.not_ready == 1 and sched.waiting == 0


def test_a_failed_load_answers_the_waiting_request_empty_at_once(tmp_path):
    async def scenario():
        host, sched, ran, gate, load = gated_load(tmp_path / "missing.gguf", tmp_path / "cache")
        request = asyncio.ensure_future(sched.completion(URI, model_work(host, ran), WAIT_S))
        await until(lambda: sched.waiting == 1)
        gate.open()
        text = await asyncio.wait_for(request, END_S)  # not after WAIT_S
        with pytest.raises(Exception, match="No model"):
            await settled(load)
        # A request after the failure does not wait at all.
        later = await sched.completion(URI, model_work(host, ran), WAIT_S)
        return text, later, host.state, ran, sched.counters

    text, later, state, ran, counters = asyncio.run(scenario())
    assert text is None and later is None and state == "error" and ran == []
    assert counters.not_ready == 2


def test_a_newer_request_supersedes_a_waiting_one_and_cancel_ends_it(checkpoint, tmp_path):
    async def scenario():
        host, sched, ran, gate, load = gated_load(checkpoint, tmp_path)
        first = asyncio.ensure_future(sched.completion(URI, model_work(host, ran), WAIT_S))
        other = asyncio.ensure_future(sched.completion("file:///project/b.py", model_work(host, ran), WAIT_S))
        await until(lambda: sched.waiting == 2)
        second = asyncio.ensure_future(sched.completion(URI, model_work(host, ran), WAIT_S))
        assert await asyncio.wait_for(first, END_S) is None  # while the load is still held back
        await until(lambda: sched.waiting == 2)  # `second` and the other document's request
        assert not second.done() and not other.done()
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
        assert not other.done()  # another document's request keeps waiting
        gate.open()
        text = await asyncio.wait_for(other, END_S)
        await settled(load)
        return text, ran, sched.counters

    text, ran, counters = asyncio.run(scenario())
    assert text == "suggestion" and len(ran) == 1  # the superseded and the cancelled did no work
    assert counters.superseded == 1 and counters.cancelled == 1 and counters.generated == 1


def test_a_reload_while_waiting_keeps_the_request_waiting_for_the_newest_model(checkpoint, tmp_path):
    async def scenario():
        host = ModelHost()
        sched, ran = Scheduler(host), []
        first_gate = Gate(host)
        first = start_load(sched, checkpoint, tmp_path / "first")
        second_gate = Gate(host)
        second = start_load(sched, checkpoint, tmp_path / "second")  # the settings changed
        request = asyncio.ensure_future(sched.completion(URI, model_work(host, ran), WAIT_S))
        await until(lambda: sched.waiting == 1)
        first_gate.open()
        replaced = await settled(first)
        for _ in range(10):  # the wake-up for the first load's end has run by now (it came first)
            await asyncio.sleep(0)
        # The first model loaded, but a newer load is queued: still loading, still waiting.
        state_between = host.state
        waiting_between = not request.done() and sched.waiting == 1
        second_gate.open()
        text = await asyncio.wait_for(request, END_S)
        return replaced, state_between, waiting_between, text, ran, await settled(second)

    replaced, state_between, waiting_between, text, ran, newest = asyncio.run(scenario())
    assert state_between == "loading" and waiting_between
    assert text == "suggestion" and ran == [newest] and newest is not replaced


def test_a_chat_ends_a_waiting_completion_and_runs_after_the_load(checkpoint, tmp_path):
    async def scenario():
        host, sched, ran, gate, load = gated_load(checkpoint, tmp_path)
        request = asyncio.ensure_future(sched.completion(URI, model_work(host, ran), WAIT_S))
        await until(lambda: sched.waiting == 1)
        chat = asyncio.ensure_future(sched.chat(lambda job: ("chat", host.state)))
        text = await asyncio.wait_for(request, END_S)  # while the load is still held back
        state_then = host.state
        gate.open()
        reply = await asyncio.wait_for(chat, END_S)
        await settled(load)
        return text, state_then, reply, ran, sched.counters

    text, state_then, reply, ran, counters = asyncio.run(scenario())
    assert text is None and state_then == "loading" and ran == []
    assert counters.busy == 1
    assert reply == ("chat", "ready")  # the chat ran once the model was loaded
