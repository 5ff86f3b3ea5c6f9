"""The one door from the server to the runtime: load a model, run one generation at a time.

All model work (download, conversion, loading, prefill and decode) runs on a single worker
thread that owns the engine, never on the asyncio loop, so the server keeps answering while a
model loads or a reply streams. Jobs run in the order they were submitted; a job whose stop flag
is set before it starts is skipped without touching the model, and a running generation checks
the flag between tokens (`should_stop`). When the queue has been empty for `IDLE_WARM_S`, the
worker compiles the next prefill bucket that a prompt has needed (`Engine.warm_next`), so the
model answers from the first minute and gets its compiled prompt lengths while the user is not
asking for anything. A request that arrives during such a compile waits for it (up to about
25 s for a 7B model with a cold compile cache, a few seconds with a warm one). Everything the server needs to say about the model (`quill/status`) is
read from here.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from runtime.errors import QuillError

log = logging.getLogger(__name__)

ProgressCallback = Callable[[str, int, int], None]
IDLE_WARM_S = 5.0  # quiet time before the worker compiles another prefill bucket


@dataclass
class Job:
    """A unit of model work; `run(job)` executes on the worker thread."""

    kind: str  # "load" | "completion" | "chat"
    run: Callable[["Job"], Any]
    stop: threading.Event = field(default_factory=threading.Event)
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)
    started: bool = False
    tokens: int = 0  # tokens generated so far (for "stopped within a few tokens")


@dataclass
class LoadedModel:
    engine: Any
    fim: Any  # runtime.prompts FimFormat or None
    chat_format: Any


class ModelHost:
    """Owns the engine and the worker thread; thread-safe to call from the event loop."""

    def __init__(self) -> None:
        self.state = "starting"  # starting | loading | ready | error
        self.model_ref: Optional[str] = None
        self.error: Optional[str] = None
        self.progress: Optional[tuple[str, int, int]] = None
        self.loaded: Optional[LoadedModel] = None
        self.generations = 0
        self.last_generation: Optional[dict] = None
        self._active_chats = 0
        # Prefill buckets compiled while idle and still to do, for quill/status; replaced whole
        # (never changed in place) by the worker, read from the event loop.
        self.warmup: dict = {"compiled": [], "pending": []}
        self._warm_failed = False
        self._lock = threading.Lock()
        self._queue: "queue.Queue[Job]" = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="quill-model", daemon=True)
        self._thread.start()

    # --- the worker --------------------------------------------------------------------------

    def submit(self, kind: str, run: Callable[[Job], Any]) -> Job:
        """Queue `run` for the worker; its result (or exception) lands in `job.future`."""
        job = Job(kind, run)
        if kind == "chat":
            with self._lock:
                self._active_chats += 1
            job.future.add_done_callback(lambda _: self._chat_done())
        self._queue.put(job)
        return job

    def _chat_done(self) -> None:
        with self._lock:
            self._active_chats -= 1

    @property
    def chat_active(self) -> bool:
        """A chat is queued or generating (completions are answered empty meanwhile)."""
        return self._active_chats > 0

    def _work(self) -> None:
        while True:
            pending = self._pending_warmup()
            try:
                job = self._queue.get(timeout=IDLE_WARM_S if pending else None)
            except queue.Empty:
                self._warm_next()
                continue
            if job.stop.is_set():
                job.future.set_result(None)  # cancelled or superseded before it started
                continue
            job.started = True
            try:
                job.future.set_result(job.run(job))
            except BaseException as exc:  # handed to whoever awaits the job
                if not isinstance(exc, QuillError):
                    log.exception("%s job failed", job.kind)
                job.future.set_exception(exc)

    def _pending_warmup(self) -> list[int]:
        """What idle time would compile now (a generation may just have needed a new bucket)."""
        engine = self.loaded.engine if self.loaded else None
        pending = engine.pending_warmup() if engine is not None and not self._warm_failed else []
        self.warmup = {"compiled": self.warmup["compiled"], "pending": pending}
        return pending

    def _warm_next(self) -> None:
        """Idle time: compile one more prefill bucket of the loaded engine."""
        engine = self.loaded.engine if self.loaded else None
        try:
            length = engine.warm_next() if engine is not None else None
        except Exception:  # noqa: BLE001 - prompts of that length keep running eagerly
            log.exception("warm-up of a prefill bucket failed; longer prompts stay uncompiled")
            self._warm_failed = True
            return
        if length is not None:
            self.warmup = {"compiled": self.warmup["compiled"] + [length], "pending": self.warmup["pending"]}
            log.info("warm-up: prefill of %d tokens compiled while idle", length)

    # --- loading -----------------------------------------------------------------------------

    def load(self, ref: str, *, device: str, precision: str, cache_dir, progress: ProgressCallback) -> Job:
        """Queue loading `ref` (converting it on first use); replaces the current model."""
        self.state, self.model_ref, self.error, self.progress = "loading", ref, None, None

        def on_progress(phase: str, done: int, total: int) -> None:
            self.progress = (phase, done, total)
            progress(phase, done, total)

        def run(job: Job) -> LoadedModel:
            self.loaded = None  # free the old weights before the new ones arrive
            self.warmup, self._warm_failed = {"compiled": [], "pending": []}, False
            try:
                from runtime.engine import load_engine
                from runtime.prompts import ChatFormat, detect_fim

                engine = load_engine(
                    ref, device=device, precision=precision, cache_dir=cache_dir, progress=on_progress
                )
                loaded = LoadedModel(
                    engine, detect_fim(engine.tokenizer), ChatFormat.from_model_dir(engine.checkpoint_dir, engine.tokenizer)
                )
            except BaseException as exc:
                self.state, self.error = "error", _describe(exc)
                raise
            self.loaded, self.state, self.progress = loaded, "ready", None
            return loaded

        return self.submit("load", run)

    # --- generating (worker thread only) ------------------------------------------------------

    def generate(self, job: Job, prompt_ids: list[int], gen, on_text: Optional[Callable[[str], None]] = None):
        """Run the engine for `job`; stops between tokens once `job.stop` is set."""
        if self.loaded is None:
            raise QuillError(f"No model is loaded ({self.error or 'the model is still loading'}).")
        self.generations += 1

        def counting(text: str) -> None:
            job.tokens += 1
            if on_text is not None and text:
                on_text(text)

        result = self.loaded.engine.generate(prompt_ids, gen, on_text=counting, should_stop=job.stop.is_set)
        job.tokens = len(result.token_ids)
        self.last_generation = {
            "kind": job.kind,
            "finishReason": result.finish_reason,
            "tokens": len(result.token_ids),
            "promptTokens": result.prompt_tokens,
            "reusedTokens": result.reused_tokens,
        }
        return result

    def status(self) -> dict:
        """Model facts for quill/status."""
        engine = self.loaded.engine if self.loaded else None
        warmup = self.warmup  # one reference: the worker replaces the dict, never edits it
        return {
            "state": self.state,
            "model": self.model_ref,
            "device": getattr(engine, "device", None),
            "dtype": getattr(engine, "dtype", None),
            "progress": (
                {"phase": self.progress[0], "done": self.progress[1], "total": self.progress[2]}
                if self.progress
                else None
            ),
            "error": self.error,
            "warmup": {"compiled": list(warmup["compiled"]), "pending": list(warmup["pending"])},
        }


def _describe(exc: BaseException) -> str:
    """The user-facing text of a load failure."""
    if isinstance(exc, QuillError):
        return str(exc)
    return f"Loading the model failed: {type(exc).__name__}: {exc}. See the server log for details."
