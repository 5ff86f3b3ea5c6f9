"""The server's state and its wiring: settings, loading, and handing requests to their pipelines.

`QuillServer` is the pygls `LanguageServer` subclass the handlers in `server.py` receive as `ls`.
It owns the settings, the `ModelHost` (model + worker thread), the `Scheduler`, the acceptance
counters and the history stores, and it is the one place where errors become user messages:
a `QuillError` becomes a JSON-RPC error whose message says what to do (`user_error`), and
problems outside a request (a bad setting, a failed load) become one `window/showMessage` with
details in the log. A completion runs through `completion.complete`, a chat turn through
`chat.reply`; this module gives them the documents, the settings, the host and the scheduler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Optional

from lsprotocol import types
from pygls.exceptions import JsonRpcServerError
from pygls.lsp.server import LanguageServer

from lsp_server import chat, completion, history, settings as settings_mod
from lsp_server.load_progress import ProgressRelay, ProgressReporter
from lsp_server.model_host import ModelHost
from lsp_server.protocol import CONFIG_SECTION, Acceptance, ChatParams, ChatResult, StatusResult
from lsp_server.scheduler import Scheduler
from lsp_server.transport import QuillProtocol, is_parse_error
from runtime.errors import QuillError

log = logging.getLogger("quill")

QUILL_ERROR_CODE = -32001  # JSON-RPC server-error range: a problem the user can fix


@contextlib.contextmanager
def user_error():
    """Turn a QuillError into a JSON-RPC error carrying its message (the one boundary)."""
    try:
        yield
    except QuillError as exc:
        raise JsonRpcServerError(str(exc), QUILL_ERROR_CODE) from exc


class QuillServer(LanguageServer):
    def __init__(self) -> None:
        from lsp_server import __version__

        super().__init__("quill", __version__, protocol_cls=QuillProtocol)
        self.cli_settings: dict = {}  # camelCase, from `quill serve` flags; wins over the editor
        self.init_options: Any = None
        self.settings = settings_mod.Settings()
        self.host = ModelHost()
        self.scheduler = Scheduler(self.host)
        self.acceptance = Acceptance()
        self.load_started = asyncio.Event()
        # cleared while settings are being re-read, so a request sent after a change sees it
        self.settings_settled = asyncio.Event()
        self.settings_settled.set()
        self.loop: Optional[asyncio.AbstractEventLoop] = None  # pygls' loop, known from `initialize`
        self._load_key: Optional[tuple] = None
        self._shown_problems: set[str] = set()
        self._stores: dict[tuple, history.HistoryStore] = {}

    # --- settings and loading ------------------------------------------------------------------

    def apply_initialization_options(self, options: Any) -> None:
        """Remember `initializationOptions` ({"quill": {...}} or the section itself)."""
        self.loop = asyncio.get_running_loop()
        if isinstance(options, dict) and isinstance(options.get(CONFIG_SECTION), dict):
            options = options[CONFIG_SECTION]
        self.init_options = options
        self.settings, problems = self._resolve(None)
        self._report_problems(problems)

    def _resolve(self, configuration: Any) -> tuple[settings_mod.Settings, list[str]]:
        resolved, problems = settings_mod.merge(settings_mod.Settings(), self.init_options, "initializationOptions")
        resolved, more = settings_mod.merge(resolved, configuration)
        resolved, flags = settings_mod.merge(resolved, self.cli_settings, "command line")
        return resolved, problems + more + flags

    async def refresh_configuration(self, pushed: Any) -> None:
        """Re-read settings (pushed with didChangeConfiguration, else pulled); reload if needed."""
        self.settings_settled.clear()
        try:
            await self._refresh_configuration(pushed)
        finally:
            self.settings_settled.set()

    async def _refresh_configuration(self, pushed: Any) -> None:
        configuration = pushed.get(CONFIG_SECTION) if isinstance(pushed, dict) else None
        if configuration is None and self._client_supports_configuration():
            try:
                items = [types.ConfigurationItem(section=CONFIG_SECTION)]
                configuration = (await self.workspace_configuration_async(types.ConfigurationParams(items)))[0]
            except Exception as exc:  # a client that fails the request still gets a working server
                log.warning("workspace/configuration failed: %s", exc)
        self.settings, problems = self._resolve(configuration)
        self._report_problems(problems)
        if self.settings.load_key() != self._load_key:
            self._load_key = self.settings.load_key()
            asyncio.ensure_future(self.load_model())

    def _client_supports_configuration(self) -> bool:
        workspace = self.client_capabilities.workspace
        return bool(workspace and workspace.configuration)

    def _report_problems(self, problems: list[str]) -> None:
        for problem in problems:
            log.warning("%s", problem)
            if problem not in self._shown_problems:
                self._shown_problems.add(problem)
                self.window_show_message(types.ShowMessageParams(types.MessageType.Warning, f"Quill: {problem}"))

    def load_model(self) -> "asyncio.Task[None]":
        """Queue loading (or reloading) the model on the worker now; return the task that reports
        its work-done progress until it ends.

        Queued here and not in the task: a completion handled right after a settings change (even
        one read from the same chunk of input) then finds the host "loading" and waits for the
        new model, instead of running on the old one or finding the last load's "error"."""
        s = self.settings
        loop = asyncio.get_running_loop()
        relay = ProgressRelay()
        job = self.host.load(
            s.model_ref,
            device=s.device,
            precision=s.precision,
            cache_dir=s.cache_dir,
            progress=lambda *p: loop.call_soon_threadsafe(relay.report, *p),
        )
        self.scheduler.watch_load(job)  # completions sent meanwhile wait for this load
        self.load_started.set()
        return asyncio.ensure_future(self._report_load(job, s, relay))

    async def _report_load(self, job, s: settings_mod.Settings, relay: ProgressRelay) -> None:
        relay.attach(await ProgressReporter.start(self, f"Quill: loading {s.model_ref}"))
        reporter = relay.reporter
        try:
            loaded = await asyncio.wrap_future(job.future)
        except BaseException as exc:
            if job is not self.host.newest_load:  # the settings changed meanwhile: not the user's model any more
                reporter.end(f"Replaced by {self.host.model_ref}")
                log.warning("loading %s failed, and a newer load replaces it: %s", s.model_ref, exc)
            else:
                reporter.end(f"Failed: {self.host.error}")
                self.window_show_message(types.ShowMessageParams(types.MessageType.Error, f"Quill: {self.host.error}"))
            if not isinstance(exc, Exception):
                raise
            return
        if job is not self.host.newest_load:
            reporter.end(f"Replaced by {self.host.model_ref}")
            return
        engine = loaded.engine
        message = f"{s.model_ref} ready on {engine.device} ({engine.dtype})"
        reporter.end(message)
        log.info("%s; FIM: %s", message, "yes" if loaded.fim else "no (prefix continuation)")

    # --- completions ---------------------------------------------------------------------------

    def client_has_inline_completion(self) -> bool:
        text_document = self.client_capabilities.text_document
        return bool(text_document and getattr(text_document, "inline_completion", None))

    async def complete(self, uri: str, position: types.Position, items: completion.Items) -> Any:
        """The LSP result (made by `items`) for a completion at `position` in document `uri`."""
        document = self.workspace.text_documents.get(uri)
        if document is None:
            log.info("completion for %s, which is not open: empty result", uri)
            return items(None, None)
        encoding = str(getattr(self.workspace.position_encoding, "value", None) or "utf-16")
        return await completion.complete(
            uri,
            document,
            position,
            settings=self.settings.completion,
            encoding=encoding,
            host=self.host,
            schedule=self._schedule_completion,
            items=items,
        )

    async def _schedule_completion(self, uri: str, work: completion.Work) -> Optional[str]:
        """The suggestion that `work` makes under the scheduler's rules (None = empty result)."""
        await self.settings_settled.wait()
        wait_s = self.settings.completion.wait_for_model_seconds
        text = await self.scheduler.completion(uri, work, wait_s)
        if text is not None:
            self.acceptance.shown += 1
        return text

    # --- chat and history ----------------------------------------------------------------------

    def folder_for(self, folder: Optional[str], document_uri: Optional[str]) -> Optional[str]:
        """The workspace folder a chat belongs to: the given one, the document's, else the first."""
        if folder:
            return folder
        folders = [f.uri for f in self.workspace.folders.values()]
        if document_uri:
            matches = [f for f in folders if document_uri.startswith(f.rstrip("/") + "/")]
            if matches:
                return max(matches, key=len)
        return folders[0] if folders else self.workspace.root_uri

    def history_store(self, folder: Optional[str]) -> Optional[history.HistoryStore]:
        """The store for `folder`, or None when history is off."""
        if not self.settings.history:
            return None
        data_dir = history.default_data_dir(self.settings.data_dir)
        key = (str(data_dir), folder)
        if key not in self._stores:
            self._stores[key] = history.HistoryStore(data_dir, folder)
        return self._stores[key]

    async def chat(self, params: ChatParams) -> ChatResult:
        """Run one chat turn (`chat.reply`), streaming deltas, and record it in the history."""
        await self.settings_settled.wait()
        await self.load_started.wait()
        if self.host.state == "error":
            raise QuillError(self.host.error or "The model failed to load.")
        uri = params.text_document.uri if params.text_document is not None else None
        document = self.workspace.text_documents.get(uri) if uri is not None else None
        loop = asyncio.get_running_loop()
        token = params.partial_result_token
        send = (lambda text: loop.call_soon_threadsafe(self._send_delta, token, text)) if token is not None else None
        return await chat.reply(
            params,
            document,
            store=self.history_store(self.folder_for(params.workspace_folder, uri)),
            settings=self.settings,
            send=send,
            host=self.host,
            schedule=self.scheduler.chat,
        )

    def _send_delta(self, token: Any, text: str) -> None:
        self.protocol.notify(types.PROGRESS, types.ProgressParams(token=token, value={"delta": text}))

    # --- status and errors ---------------------------------------------------------------------

    def status(self) -> StatusResult:
        model = self.host.status()
        return StatusResult(
            state=model["state"],
            model=model["model"],
            device=model["device"],
            dtype=model["dtype"],
            progress=model["progress"],
            acceptance=self.acceptance,
            error=model["error"],
            generations=self.host.generations,
            completions=self.scheduler.counters,
            last_generation=self.host.last_generation,
            settings=settings_mod.to_dict(self.settings),
            warmup=model["warmup"],
            tokens_generated=self.host.tokens_generated,
            tokens_shown=self.host.tokens_shown,
            draft_tokens_accepted=self.host.draft_tokens_accepted,
            cpu_kernel=model["cpu_kernel"],
            compiled=model["compiled"],
            background_compile=model["background_compile"],
        )

    def report_server_error(self, error: Exception, source: Any) -> None:
        """Errors outside a request: answer garbage with ParseError, log the rest (no popups)."""
        if is_parse_error(error):
            self.protocol.send_parse_error(error)
            log.warning("answered a message that is not JSON with ParseError (-32700): %s", error)
            return
        log.warning("protocol error (%s): %s", getattr(source, "__name__", source), error)
