"""Who gets the model when: superseding, cancellation, and completions versus chat.

Policy (the issue asks to pick one of interleave / preempt / answer-empty and say which):
**answer-empty.** While a chat reply is queued or streaming, inline completion requests are
answered at once with an empty result and the chat keeps the model. The engine keeps one KV
cache (the last sequence), so interleaving or preempting would throw away the chat's cache on
every keystroke and slow both down; an empty answer costs the editor nothing (it asks again on
the next keystroke) and the chat, which the user is watching, streams at full speed.

Other rules:
- A newer completion request for a document supersedes the older one: the older request is
  answered with an empty result immediately, and its job is skipped if it has not started or
  stopped between tokens if it has.
- A completion that comes within `DEBOUNCE_S` of the previous one for its document waits that
  long before it reaches the model, so a burst of keystrokes (or 50 requests in a row) does the
  model work for the first and the last only (the first is stopped within a token when the next
  supersedes it). One that comes after a pause goes to the model at once: the user who stops
  typing gets the suggestion a debounce sooner.
- `$/cancelRequest` cancels the handler's task: the job's stop flag is set, the handler waits
  until the worker has let go of it (at most one token), then the request is answered with
  `RequestCancelled`. Every request gets exactly one response either way.
- While the model loads (before the first load, during it, or during a reload after a settings
  change), the newest request for a document waits for it, up to `wait_s` (the setting
  `completion.waitForModelSeconds`; 0 answers empty at once). Editors ask once on entering insert
  mode and not again until the next keystroke, so an empty answer here would leave a user who
  paused without a suggestion. The wait ends when the model is ready (the request then runs as
  usual), when the load fails or the bound passes (empty, counted `not_ready`), when a newer
  request for the document supersedes it or `$/cancelRequest` cancels it (at once), or when a chat
  is asked for (empty, counted `busy`: the chat would keep the model anyway). A request that
  comes after the last load failed does not wait (empty, `not_ready`): nothing is loading. Nothing
  polls: every load is handed to `watch_load`, which wakes the waiting requests when it is queued
  and when it ends.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from lsp_server.model_host import Job, ModelHost
from lsp_server.protocol import CompletionCounters

DEBOUNCE_S = 0.05
CANCEL_WAIT_S = 30.0  # bound on waiting for a stopped job to let go of the model


@dataclass
class _Ticket:
    """One completion request's claim on its document."""

    answer: asyncio.Future
    job: Optional[Job] = None
    superseded: bool = field(default=False)

    def supersede(self) -> None:
        self.superseded = True
        if self.job is not None:
            self.job.stop.set()
        if not self.answer.done():
            self.answer.set_result(None)


class Scheduler:
    """Runs on the event loop; hands jobs to the ModelHost's worker thread."""

    def __init__(self, host: ModelHost) -> None:
        self.host = host
        self.counters = CompletionCounters()
        self._latest: dict[str, _Ticket] = {}
        self._last_request: dict[str, float] = {}  # event-loop time of each document's last request
        # Resolved (and dropped) whenever the model's state may have changed or a chat was asked
        # for; requests waiting for the model wait on it. Made on first use, on the running loop.
        self._model_change: Optional[asyncio.Future] = None
        self.waiting = 0  # requests waiting for the model right now

    # --- the model's state ---------------------------------------------------------------------

    def watch_load(self, job: Job) -> None:
        """Wake the requests waiting for the model now (a load was queued) and when `job` ends."""
        loop = asyncio.get_running_loop()
        self._wake()
        # The worker sets the host's state before it finishes the job's future, so a woken
        # request already sees "ready" or "error".
        job.future.add_done_callback(lambda _: loop.call_soon_threadsafe(self._wake))

    def _wake(self) -> None:
        change, self._model_change = self._model_change, None
        if change is not None and not change.done():
            change.set_result(None)

    async def _until_ready(self, ticket: _Ticket, wait_s: float) -> bool:
        """Wait (up to `wait_s`) until the model is ready; False if it failed, the bound passed,
        a chat was asked for or the ticket was superseded meanwhile."""
        host = self.host
        if host.state == "ready":
            return True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        self.waiting += 1
        try:
            while host.state in ("starting", "loading") and not ticket.superseded and not host.chat_active:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                if self._model_change is None:
                    self._model_change = loop.create_future()
                await asyncio.wait([ticket.answer, self._model_change], timeout=remaining,
                                   return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.waiting -= 1
        return host.state == "ready"

    # --- completions ---------------------------------------------------------------------------

    async def completion(self, uri: str, work: Callable[[Job], Optional[str]], wait_s: float = 0.0) -> Optional[str]:
        """The completion text for the newest request on `uri`, or None (empty result).

        `wait_s`: how long a request sent while the model loads waits for it."""
        counters = self.counters
        counters.requested += 1
        state = self.host.state
        if state == "error" or (state != "ready" and wait_s <= 0):
            counters.not_ready += 1
            return None
        if self.host.chat_active:
            counters.busy += 1
            return None
        loop = asyncio.get_running_loop()
        ticket = _Ticket(loop.create_future())
        previous, self._latest[uri] = self._latest.get(uri), ticket
        if previous is not None:
            previous.supersede()
        now = loop.time()
        in_burst = now - self._last_request.get(uri, float("-inf")) < DEBOUNCE_S
        self._last_request[uri] = now
        try:
            return await self._run_ticket(ticket, work, debounce=in_burst, wait_s=wait_s)
        finally:
            if self._latest.get(uri) is ticket:
                del self._latest[uri]

    async def _run_ticket(self, ticket: _Ticket, work: Callable[[Job], Optional[str]], *,
                          debounce: bool, wait_s: float) -> Optional[str]:
        try:
            # A request that waited for the model needs no debounce: any newer one superseded it.
            if debounce and self.host.state == "ready":
                await asyncio.wait([ticket.answer], timeout=DEBOUNCE_S)
            ready = await self._until_ready(ticket, wait_s)
        except asyncio.CancelledError:
            self.counters.cancelled += 1
            raise
        if ticket.superseded:
            self.counters.superseded += 1
            return None
        if self.host.chat_active:  # a chat arrived during the debounce or the wait: it keeps the model
            self.counters.busy += 1
            return None
        if not ready:  # the load failed, or did not end within wait_s
            self.counters.not_ready += 1
            return None
            self.counters.busy += 1
            return None
        job = ticket.job = self.host.submit("completion", lambda job: self._counted(job, work))
        loop = asyncio.get_running_loop()
        job.future.add_done_callback(lambda f: loop.call_soon_threadsafe(_settle, ticket.answer, f))
        try:
            result = await asyncio.shield(ticket.answer)
        except asyncio.CancelledError:
            self.counters.cancelled += 1
            await stop_and_wait(job)
            raise
        if ticket.superseded:
            self.counters.superseded += 1
            return None
        return result

    def _counted(self, job: Job, work: Callable[[Job], Optional[str]]) -> Optional[str]:
        """Worker side: run `work` and count whether it finished or was stopped part-way."""
        try:
            return work(job)
        finally:
            if job.stop.is_set():
                self.counters.stopped_tokens += job.tokens
            else:
                self.counters.generated += 1

    async def chat(self, work: Callable[[Job], Any]) -> Any:
        """Run a chat job to its end; on cancellation stop it, wait for it, then re-raise."""
        job = self.host.submit("chat", work)
        self._wake()  # completions waiting for the model give way to the chat now
        try:
            return await asyncio.shield(asyncio.wrap_future(job.future))
        except asyncio.CancelledError:
            await stop_and_wait(job)
            raise


def _settle(answer: asyncio.Future, done: "Any") -> None:
    """Copy a finished job's outcome into the request's answer (unless already answered)."""
    if answer.done():
        return
    if done.exception() is not None:
        answer.set_exception(done.exception())
    else:
        answer.set_result(done.result())


async def stop_and_wait(job: Job) -> None:
    """Set the job's stop flag and wait until the worker is done with it."""
    job.stop.set()
    wrapped = asyncio.wrap_future(job.future)
    await asyncio.wait([wrapped], timeout=CANCEL_WAIT_S)
    if wrapped.done() and not wrapped.cancelled():
        wrapped.exception()  # retrieved so asyncio does not warn about it
