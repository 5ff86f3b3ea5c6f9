"""The online download path, run by the real `quill pull` against a local HTTP server that speaks
the Hugging Face hub's protocol (the real hub is unreachable here). huggingface_hub does the HTTP
work for real; the server records every request, so the test sees exactly which files were
fetched, that a cut download resumes with a Range request, and what gated/missing repos answer."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from runtime.checkpoint import read_manifest
from runtime.progress import format_bytes
from tests.runtime.test_store_fixtures import python_env, run_python, tiny_llama_dir
from tests.runtime.test_store_hf_cache import UNNEEDED

SHA = "89abcdef0123456789abcdef0123456789abcdef"
RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
API = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)(/revision/(?P<rev>[^/]+))?$")


class FakeHub(BaseHTTPRequestHandler):
    repos: dict[str, dict[str, bytes]] = {}
    gated: set[str] = set()
    log: list[tuple[str, str, str]] = []  # (method, path, range header)
    cut_once: set[str] = set()  # files whose first GET stops 1 MB short of the end

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _error(self, status: int, code: str) -> None:
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _route(self, head: bool) -> None:
        path = self.path.split("?", 1)[0]
        self.log.append((self.command, path, self.headers.get("Range", "")))
        m = API.match(path) or RESOLVE.match(path)
        repo = m and m.group("repo")
        if repo in self.gated:
            return self._error(403, "GatedRepo")
        if repo not in self.repos:
            return self._error(404, "RepoNotFound")
        files = self.repos[repo]
        if API.match(path):
            body = json.dumps({"id": repo, "sha": SHA, "siblings": [
                {"rfilename": n, "size": len(d)} for n, d in sorted(files.items())]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            return self.wfile.write(body)
        name = m.group("file")
        if name not in files:
            return self._error(404, "EntryNotFound")
        data = files[name]
        start = int(re.match(r"bytes=(\d+)-", self.headers.get("Range", "bytes=0-")).group(1))
        self.send_response(206 if start else 200)
        self.send_header("X-Repo-Commit", SHA)
        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.send_header("Content-Length", str(len(data) - start))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if head:
            return
        if name in self.cut_once and not start:
            self.cut_once.discard(name)
            self.wfile.write(data[: len(data) - 1_000_000])  # past huggingface_hub's 10 MB chunk
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(data[start:])

    def do_HEAD(self):
        self._route(head=True)

    def do_GET(self):
        self._route(head=False)


@pytest.fixture
def hub(tmp_path):
    src = tiny_llama_dir(tmp_path / "src")
    files = {p.name: p.read_bytes() for p in src.iterdir()}
    FakeHub.repos = {"quill-test/tiny": {**files, **UNNEEDED}}
    FakeHub.gated = {"quill-test/gated"}
    FakeHub.log = []
    FakeHub.cut_once = {"model.safetensors"}
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _env(endpoint: str, tmp_path: Path) -> dict[str, str]:
    env = python_env(HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / "hf"),
                     QUILL_CACHE_DIR=str(tmp_path / "cache"), NO_PROXY="127.0.0.1,localhost",
                     HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1")
    for var in ("HF_HUB_OFFLINE", "HF_HUB_CACHE", "HF_TOKEN"):
        env.pop(var, None)
    return env


def _quill(endpoint: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "quill_cli", *args], env=_env(endpoint, tmp_path),
                          capture_output=True, text=True, timeout=300)
    print(f"$ quill {' '.join(args)} (rc {proc.returncode})\n{proc.stdout}{proc.stderr[-1500:]}")
    return proc


def test_pull_fetches_only_needed_files_and_resumes_a_cut_download(hub, tmp_path):
    first = _quill(hub, tmp_path, "pull", "quill-test/tiny")
    assert first.returncode == 0  # huggingface_hub resumed the cut file within the same pull
    downloads = [(p, r) for method, p, r in FakeHub.log if method == "GET" and "/resolve/" in p]
    fetched = sorted({p.rsplit("/", 1)[-1] for p, _ in downloads})
    print("fetched:", fetched, "ranges:", [r for _, r in downloads if r])
    assert fetched == ["config.json", "generation_config.json", "model.safetensors", "tokenizer.model"]
    touched = {p for _, p, _ in FakeHub.log}
    assert not [n for n in UNNEEDED if any(t.endswith("/" + n) for t in touched)]
    cut = len(FakeHub.repos["quill-test/tiny"]["model.safetensors"]) - 1_000_000
    resumed = [int(r[6:-1]) for p, r in downloads if p.endswith("/model.safetensors") and r]
    assert len(resumed) == 1 and 0 < resumed[0] <= cut, "the cut download was not resumed"

    ckpt = tmp_path / "cache" / "models" / "quill-test--tiny"
    manifest = read_manifest(ckpt)
    assert manifest.source["revision"] == SHA and manifest.source["kind"] == "hf"
    again = _quill(hub, tmp_path, "pull", "quill-test/tiny")
    assert "already in the cache" in again.stdout


DISK_CHECK = """
from runtime.store import resolve_model
try:
    resolve_model("quill-test/tiny", reserve_bytes=10**18)
except Exception as err:
    print(type(err).__name__, err)
"""


def test_gated_missing_and_no_disk(hub, tmp_path):
    gated = _quill(hub, tmp_path, "pull", "quill-test/gated")
    assert gated.returncode == 1
    assert f"accept its license on {hub}/quill-test/gated" in gated.stderr
    assert "hf auth login" in gated.stderr
    missing = _quill(hub, tmp_path, "pull", "quill-test/nope")
    assert missing.returncode == 1
    assert "no model 'quill-test/nope'" in missing.stderr and "smollm2" in missing.stderr
    assert not (tmp_path / "cache" / "models").exists() or not any((tmp_path / "cache" / "models").iterdir())
    no_disk = run_python(DISK_CHECK, _env(hub, tmp_path))
    print(no_disk.stdout, no_disk.stderr[-800:])
    assert no_disk.stdout.startswith("DiskSpaceError Not enough free disk for quill-test/tiny")
    files = FakeHub.repos["quill-test/tiny"]
    selected = ["config.json", "generation_config.json", "model.safetensors", "tokenizer.model"]
    needed = sum(len(files[n]) for n in selected) + len(files["model.safetensors"])
    assert f"needs {format_bytes(needed)}" in no_disk.stdout and "to download" in no_disk.stdout
    assert not [p for m, p, _ in FakeHub.log if m == "GET" and "/resolve/" in p]  # checked first
    assert not list((tmp_path / "hf").rglob("*.incomplete")) and not list((tmp_path / "hf").rglob("blobs/*"))


def test_pytdml_repo_with_a_gptfast_model_pth(hub, tmp_path):
    """A hub repo that holds only a gpt-fast `model.pth` (the DirectML sample's `-pytdml`
    repos) with its config and tokenizer is fetched and converted through `convert_pth`."""
    import io

    import torch

    from tests.runtime.test_convert_pth import gptfast_state_dict
    from tests.runtime.test_store_fixtures import tiny_llama

    model, _ = tiny_llama(0)
    buf = io.BytesIO()
    torch.save(gptfast_state_dict(model), buf)
    tiny = FakeHub.repos["quill-test/tiny"]
    FakeHub.repos["quill-test/tiny-pytdml"] = {
        "model.pth": buf.getvalue(), "config.json": tiny["config.json"],
        "tokenizer.model": tiny["tokenizer.model"], "README.md": b"# pytdml", "logo.png": b"x",
    }
    pulled = _quill(hub, tmp_path, "pull", "quill-test/tiny-pytdml")
    assert pulled.returncode == 0
    fetched = sorted(p.rsplit("/", 1)[-1] for m, p, _ in FakeHub.log if m == "GET" and "/resolve/" in p)
    assert fetched == ["config.json", "model.pth", "tokenizer.model"]
    ckpt = tmp_path / "cache" / "models" / "quill-test--tiny-pytdml"
    assert read_manifest(ckpt).source["revision"] == SHA


PROGRESS = """
import json
from runtime.store import resolve_model
events = []
resolve_model("quill-test/tiny", progress=lambda *e: events.append(e))
print(json.dumps(events))
"""


def test_download_progress_moves_within_a_file(hub, tmp_path):
    """Bytes arrive through the callback while a file downloads, not only between files."""
    run = run_python(PROGRESS, _env(hub, tmp_path))
    assert run.returncode == 0, run.stderr[-1500:]
    events = json.loads(run.stdout.strip().splitlines()[-1])
    downloads = [done for phase, done, _ in events if phase == "download"]
    files = FakeHub.repos["quill-test/tiny"]
    total = sum(len(files[n]) for n in ("config.json", "generation_config.json",
                                        "model.safetensors", "tokenizer.model"))
    print("download events:", downloads, "of", total)
    assert {phase for phase, _, _ in events} == {"download", "convert"}
    assert downloads[-1] == total and downloads == sorted(downloads)
    assert 10 * 1024 * 1024 in downloads  # huggingface_hub's first 10 MB chunk of the weights
