"""Inline completion latency through the real server (`quill serve` over stdio) on a GPU.

A typing replay against a model with real shapes (default Phi-3-mini-4k) and seeded random
weights: 20 inline-completion requests, the first with a 1,536-token prefix, each next one 8
tokens longer, at most 64 new tokens each. Latency is timed client-side, from the request to its
answer (the server's 50 ms debounce applies only to a request within 50 ms of the one before;
a request is sent no sooner than 70 ms after the one before, untimed, so none waits it: an answer
that came sooner, as a suggestion stopped early can, would otherwise put the debounce into the
next request's time; 8 tokens in 70 ms is still faster than anyone types). Random weights end suggestions where they end, so
each request also records how many tokens the engine generated (`quill/status`'s
`lastGeneration`), why it stopped, and how many tokens the shown suggestion has.

    # here (network): wheels the device lacks + the tokenizer, into the git-ignored .bench-offline/
    python benchmarks/gpu_server.py --prepare
    # on the GPU machine (no network), from the repository root, carrying .bench-offline:
    python3 benchmarks/gpu_server.py --precision int8,bf16 --budget 480 --out $OUT/gpu-server.json
    # CPU smoke test of the whole path (tiny layers, the real vocabulary and tokenizer):
    python benchmarks/gpu_server.py --tiny --device cpu --out /tmp/gpu-server-tiny.json
    # issue 19: the replay with `stopEarly` and `promptLookup` off ("before") and on ("after"),
    # alternating in one server per precision; --checkpoint runs a real model instead
    python3 benchmarks/gpu_server.py --compare --precision int8 --out $OUT/gpu-server-compare.json
    python3 benchmarks/gpu_server.py --compare --checkpoint SmolLM2-135M-Instruct.Q4_1.gguf ...

Suggestions are asked where an editor allows multi-line ones: after each 8 tokens of typing the
user presses Enter and the new line gets the typed line's indentation (`completion.multiline`
true, `completion.maxTokens` 64, `completion.contextTokens` 2,048 so the window never cuts the
prefix). The checkpoint is a converted Quill checkpoint (`runtime/checkpoint.py`'s
`write_checkpoint`: manifest, native tensor names, bf16 safetensors) with the model's real
tokenizer exported from llama.cpp's vocab GGUF; each precision runs in its own server process.

With `--compare` the server is started once per precision and the whole replay runs `--rounds`
times as "before" then "after", the completion settings switched between them with
`workspace/didChangeConfiguration` (no reload): the same process, compiled graphs and GPU for
both. Each pass records the change of `quill/status`'s `tokensGenerated`, `tokensShown` and
`draftTokensAccepted`. Random weights make both features meaningless (see `RANDOM_NOTE`), which
is why `--checkpoint` takes a real model (a GGUF, an HF folder or a converted checkpoint).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib
import importlib.metadata
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from common import MODEL_SHAPES, REPO_ROOT, RESULTS_DIR, ResultLog, environment  # noqa: E402
from cpu import latency_summary, real_python_text, start_server, test_assets  # noqa: E402
from runtime.workloads import percentile  # noqa: E402

REPLAY = {"start": 1536, "step": 8, "requests": 20, "new_tokens": 64}
CONTEXT_TOKENS = 2048  # > the longest prefix (about 1,700 tokens): nothing is cut, reuse holds
PRECISIONS = {"bf16": "bfloat16", "bfloat16": "bfloat16", "int8": "int8", "int4": "int4",
              "float16": "float16", "float32": "float32", "auto": "auto"}
OFFLINE = REPO_ROOT / ".bench-offline"  # git-ignored; carried to the GPU machine
# Pure-Python packages of the server that the GPU image lacks (or has in other versions), then
# compiled ones it is said to have, carried only as a fallback (installed only when missing).
PURE = ("pygls", "lsprotocol", "cattrs", "attrs", "typing_extensions", "platformdirs", "gguf")
FALLBACK = ("sentencepiece", "protobuf", "tiktoken", "regex")
REEXEC = "QUILL_GPU_SERVER_INSTALLED"  # set when main() restarts itself after installing
WHEEL_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
                   "manylinux2014_x86_64", "manylinux1_x86_64")
# llama.cpp's vocab-only GGUFs (tests/assets.py): the tokenizer of each shape (same vocabulary size
# or smaller). Mistral's shape borrows Llama-2's 32,000 pieces (same count, other pieces).
TOKENIZER_GGUF = {"phi-3-mini": "phi-3", "llama-2-7b": "llama-spm", "mistral-7b": "llama-spm",
                  "llama-3-8b": "llama-bpe", "phi-2": "gpt-2"}
NEED_S = {"checkpoint": 60, "server": 100}  # rough, Phi-3-mini on one H100, cold compile cache
COMPARE = {  # issue 19: the server as it was before streamed post-processing and prompt lookup, and now
    "before": {"stopEarly": False, "promptLookup": False},
    "after": {"stopEarly": True, "promptLookup": True},
}
COUNTERS = ("tokensGenerated", "tokensShown", "draftTokensAccepted")
RANDOM_NOTE = (
    "Random weights: the suggestions are noise, so where the streamed cut ends them (stopEarly) "
    "says nothing about where a trained model's suggestions end, and prompt lookup's drafts (the "
    "tokens that followed an earlier match of the last n-gram) are rarely what a random model "
    "emits next. The before/after ratio here is the cost of the tokens each setting generates, "
    "not what a user of a real model would see; the --checkpoint runs show that.")


def log(msg: str) -> None:
    print(f"[gpu-server] {msg}", file=sys.stderr, flush=True)


# --- offline packages and tokenizer ------------------------------------------------------------


def prepare(models: list[str]) -> None:
    """Here, with network: wheels for Python 3.12 x86-64 and tokenizers into .bench-offline/."""
    wheels = OFFLINE / "wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    wheels.mkdir(parents=True)
    specs = [f"{name}=={importlib.metadata.version(name)}" for name in PURE + FALLBACK]
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
           "--python-version", "3.12", "--implementation", "cp", "-d", str(wheels)]
    for platform_tag in WHEEL_PLATFORMS:
        cmd += ["--platform", platform_tag]
    subprocess.run(cmd + specs, check=True)
    for model in models:
        tokenizer_dir(model)
    size = sum(f.stat().st_size for f in OFFLINE.rglob("*") if f.is_file())
    log(f"{OFFLINE}: {size / 1e6:.1f} MB; carry it with the working tree")


def install_offline(target: Path) -> list[str]:
    """On the GPU machine: pip-install the carried wheels the Python there lacks into `target`
    (no index, no network) and put it and the repository on the import path of this process and
    of the server it starts. Pure wheels go in when their version differs from the one there."""
    chosen = []
    for wheel in sorted((OFFLINE / "wheels").glob("*.whl")):
        dist, version = wheel.name.split("-")[:2]
        try:
            have = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            have = None
        pure = wheel.name.endswith("-none-any.whl")
        if have is None or (pure and have != version):
            chosen.append(wheel)
    if chosen:
        log(f"installing {', '.join(w.name.split('-')[0] for w in chosen)} into {target}")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                        "--no-compile", "--upgrade", "--target", str(target), *map(str, chosen)],
                       check=True)
        sys.path.insert(0, str(target))
        importlib.invalidate_caches()
    paths = ([str(target)] if chosen else []) + [str(REPO_ROOT)]
    os.environ["PYTHONPATH"] = os.pathsep.join(paths + [p for p in [os.environ.get("PYTHONPATH")] if p])
    return [w.name for w in chosen]


def tokenizer_dir(model: str) -> Path:
    """The model's tokenizer files, exported once from llama.cpp's vocab GGUF (test assets)."""
    from runtime.tokenizer import export_gguf_tokenizer

    out = OFFLINE / "tokenizers" / model
    if (out / "tokenizer_config.json").is_file():
        return out
    try:
        gguf = test_assets().llama_cpp_models_dir() / f"ggml-vocab-{TOKENIZER_GGUF[model]}.gguf"
    except BaseException as err:  # tests/assets.py skips (a pytest exception) when offline
        raise SystemExit(f"{out} is missing and could not be made ({err}): run `python "
                         "benchmarks/gpu_server.py --prepare` where there is network; carry .bench-offline")
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    export_gguf_tokenizer(gguf, tmp)
    (tmp / "SOURCE.txt").write_text(f"exported from {gguf.name} (llama-cpp-python==0.3.36 sdist)\n")
    tmp.rename(out)
    return out


# --- the checkpoint ------------------------------------------------------------------------------


def model_shape(name: str, tiny: bool) -> dict:
    """The model's config.json numbers; `tiny` keeps architecture and vocabulary, shrinks layers."""
    shape = dict(MODEL_SHAPES[name], torch_dtype="bfloat16")
    if tiny:
        shape.update(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                     intermediate_size=128)
    return shape


def random_checkpoint(target: Path, shape: dict, tokenizer: Path, device: str, seed: int) -> dict:
    """A converted Quill checkpoint of `shape` with random bf16 weights made on `device`
    (`runtime.checkpoint.write_checkpoint`); reused when the folder holds the same shape and seed."""
    from runtime.checkpoint import write_checkpoint
    from runtime.config import ModelConfig
    from runtime.model import Transformer

    source = {"kind": "random", "ref": "benchmarks/gpu_server.py",
              "revision": f"seed={seed} normal(0,0.02) " + json.dumps(shape, sort_keys=True)}
    if same_source(target, source):
        return {"reused": True, "path": str(target)}
    shutil.rmtree(target, ignore_errors=True)
    config = ModelConfig.from_hf_config(shape)
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in Transformer(config).state_dict().items()}
    nbytes = 2 * sum(math.prod(s) for s in shapes.values())
    target.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(target.parent).free
    if free < nbytes + (1 << 30):
        raise SystemExit(f"{target.parent} has {free / 1e9:.1f} GB free; "
                         f"the weights need {nbytes / 1e9:.1f} GB")
    t0 = time.perf_counter()
    fill = random_weights(device, seed)
    tensors = {name: fill(name, size) for name, size in shapes.items()}
    names = sorted(p.name for p in tokenizer.iterdir() if p.name != "SOURCE.txt")
    write_checkpoint(target, tensors, architecture=config.family, config=shape,
                     tokenizer_files={name: tokenizer / name for name in names}, source=source)
    del tensors
    if device.startswith("cuda"):
        torch.cuda.empty_cache()  # the server process needs the memory, not this one
    return {"reused": False, "path": str(target), "bytes": nbytes, "params": nbytes // 2,
            "write_s": time.perf_counter() - t0}


def same_source(target: Path, source: dict) -> bool:
    from runtime.checkpoint import read_manifest
    from runtime.errors import CheckpointError

    try:
        return read_manifest(target).source == source
    except CheckpointError:  # absent or incomplete
        return False


def real_checkpoint(source: Path, workdir: Path, record: dict) -> Path:
    """A real model converted (once, under the workdir) by the runtime's own store, as the
    server would convert it; `record` gets its source and config."""
    from runtime.checkpoint import read_manifest
    from runtime.store import resolve_model

    t0 = time.perf_counter()
    ckpt = resolve_model(str(source), cache_dir=workdir / "models")
    manifest = read_manifest(ckpt)
    record.update(real=True, path=str(ckpt), convert_s=time.perf_counter() - t0, source=manifest.source,
                  architecture=manifest.architecture, config=manifest.config)
    log(f"checkpoint {ckpt} from {source.name} in {record['convert_s']:.1f}s")
    return ckpt


def random_weights(device: str, seed: int):
    """gpu.py's init: N(0, 0.02) for matrices, 1 for norm weights, 0 for biases (bf16, seeded)."""
    gen = torch.Generator(device=device).manual_seed(seed)

    def fill(name: str, size: tuple) -> torch.Tensor:
        t = torch.empty(size, dtype=torch.bfloat16, device=device)
        if name.endswith("norm.weight"):
            return t.fill_(1.0)
        return t.zero_() if name.endswith(".bias") else t.normal_(0.0, 0.02, generator=gen)

    return fill


# --- the replay ----------------------------------------------------------------------------------


def typed_documents(tok, text: str) -> list[dict]:
    """Request i: the first 1,536 + 8i tokens of `text`, then Enter and the typed line's indent."""
    ids = tok.encode(text)
    docs = []
    for i in range(REPLAY["requests"]):
        n = REPLAY["start"] + i * REPLAY["step"]
        typed = tok.decode(ids[:n])
        typed = text[: len(typed)] if text.startswith(typed) else typed
        last = typed.rsplit("\n", 1)[-1]
        doc = typed + "\n" + last[: len(last) - len(last.lstrip(" \t"))]
        line_text = doc.rsplit("\n", 1)[-1]
        docs.append({"text": doc, "typed_tokens": n, "line": doc.count("\n"),
                     "character": len(line_text.encode("utf-16-le")) // 2})
    return docs


def server_settings(ckpt: Path, precision: str, device: str, workdir: Path) -> dict:
    """What an editor user would put under `quill` (lsp_server/settings.py); no new settings."""
    return {"checkpointPath": str(ckpt), "device": device, "precision": precision, "history": False,
            "dataDir": str(workdir / "data"), "cacheDir": str(workdir / "cache"),
            "completion": {"maxTokens": REPLAY["new_tokens"], "contextTokens": CONTEXT_TOKENS,
                           "multiline": True}}


async def serve_and_replay(ckpt: Path, tok, docs: list, settings: dict, workdir: Path, deadline: float,
                           run: dict, flush, server_log: Path, passes: list | None = None) -> None:
    """Start `quill serve`, wait for the model, type `docs`; fill `run` as results arrive.
    `passes`: [(label, completion settings)], each a whole replay in this server, recorded under
    run["passes"]; None: one replay with the settings as they are, under run["requests"]."""
    from lsp_server import protocol
    from quill_cli.lsp_session import Session

    session = Session(lambda delta: None, lambda text: log(f"server: {text}"))
    session._drain_stderr = functools.partial(_drain_to_file, session, server_log)  # keep the whole log
    cache = Path(settings["cacheDir"])
    run["compile_cache_files_before"] = sum(p.is_file() for p in cache.rglob("*")) if cache.exists() else 0
    t0 = time.perf_counter()
    try:
        await start_server(session, {"quill": settings}, workdir)
        try:
            status = await asyncio.wait_for(session.wait_ready(), max(1.0, deadline - time.monotonic()))
        except (SystemExit, asyncio.TimeoutError) as err:
            raise RuntimeError(f"model not ready: {err!r}; server log tail:\n{''.join(session.stderr_tail)}")
        run["model_ready_s"] = time.perf_counter() - t0
        run["status"] = {k: status.get(k) for k in ("model", "device", "dtype", "settings")}
        log(f"model ready in {run['model_ready_s']:.1f}s ({status.get('dtype')} on {status.get('device')})")
        flush()
        replay = Replay(session, protocol, tok, (workdir / "replay.py").as_uri(), deadline)
        if passes is None:
            await replay.run(docs, run, flush)
        for label, completion in passes or ():
            if deadline - time.monotonic() < 5:
                break
            await set_completion(session, protocol, settings, completion)
            entry = {"variant": label, "completion": completion, "requests": []}
            run["passes"].append(entry)
            start = await session.request(protocol.STATUS, {})
            await replay.run(docs, entry, flush)
            end = await session.request(protocol.STATUS, {})
            entry["counters"] = {k: end[k] - start[k] for k in COUNTERS}
            log(f"pass {len(run['passes'])} ({label}): {entry['counters']}")
            flush()
        # Prefill buckets the server compiled while idle (none during a replay without pauses).
        run["warmup_after_replay"] = (await session.request(protocol.STATUS, {})).get("warmup")
    finally:
        try:
            await asyncio.wait_for(session.stop(), 40)
        except Exception as err:  # the numbers are in; a slow shutdown must not lose them
            run["shutdown_error"] = repr(err)
        proc = getattr(session.client, "_server", None)
        if proc is not None and proc.returncode is None:  # the next server needs the GPU memory
            proc.kill()
            await proc.wait()


async def set_completion(session, protocol, settings: dict, completion: dict) -> None:
    """Push `quill.completion` changes as an editor does; the model stays loaded (same load key)."""
    from lsprotocol import types

    pushed = dict(settings, completion={**settings["completion"], **completion})
    session.client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"quill": pushed}))
    for _ in range(100):  # the notification is handled before the next request; check, don't assume
        got = (await session.request(protocol.STATUS, {}))["settings"]["completion"]
        if all(got.get(k) == v for k, v in completion.items()):
            return
    raise RuntimeError(f"the server did not take {completion}: its completion settings are {got}")


class Replay:
    """Types the documents into one open file; a later pass starts again from the first one
    (the engine's cached prefix then covers its 1,536 tokens, as after an undo)."""

    def __init__(self, session, protocol, tok, uri: str, deadline: float):
        from lsp_server.scheduler import DEBOUNCE_S

        self.session, self.protocol, self.tok, self.uri, self.deadline = session, protocol, tok, uri, deadline
        self.version = 0
        self.pace_s = DEBOUNCE_S + 0.02  # between two requests' sending: no request is debounced
        self.not_before = 0.0

    async def run(self, docs: list, into: dict, flush) -> None:
        for i, doc in enumerate(docs):
            if self.deadline - time.monotonic() < 5:
                into["stopped_early"] = f"budget: {i} of {len(docs)} requests done"
                break
            self.version += 1
            row, sent = await one_request(self.session, self.protocol, self.tok, self.uri, self.version, i, doc,
                                          self.deadline, self.not_before)
            self.not_before = sent + self.pace_s
            into["requests"].append(row)
            flush()


async def one_request(session, protocol, tok, uri: str, version: int, i: int, doc: dict, deadline: float,
                      not_before: float) -> tuple[dict, float]:
    """One inline completion, sent no sooner than `not_before` (perf_counter); the row and when it was sent."""
    from lsprotocol import types

    if version == 1:
        session.open(uri, doc["text"])
    else:
        session.client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=doc["text"])]))
    before = (await session.request(protocol.STATUS, {}))["generations"]
    pause = max(0.0, not_before - time.perf_counter())
    if pause:
        await asyncio.sleep(pause)
    t0 = time.perf_counter()
    text = await asyncio.wait_for(session.inline_completion(uri, doc["line"], doc["character"]),
                                  timeout=max(5.0, deadline - time.monotonic()))
    latency = time.perf_counter() - t0
    status = await session.request(protocol.STATUS, {})
    gen = (status.get("lastGeneration") if status["generations"] > before else None) or {}
    row = {"latency_s": latency, "typed_tokens": doc["typed_tokens"],
           "generated_tokens": gen.get("tokens", 0), "finish_reason": gen.get("finishReason"),
           "prompt_tokens": gen.get("promptTokens"), "reused_tokens": gen.get("reusedTokens"),
           "draft_tokens": gen.get("draftTokens"), "accepted_draft_tokens": gen.get("acceptedDraftTokens"),
           "suggestion_tokens": len(tok.encode(text)) if text else 0,
           "suggestion_chars": len(text or ""), "suggestion_lines": text.count("\n") + 1 if text else 0,
           "suggestion": text, "paused_before_s": pause}
    log(f"request {i + 1:2d}: {latency * 1000:7.1f} ms, generated {row['generated_tokens']} tokens "
        f"({row['finish_reason']}), prompt {row['prompt_tokens']}, suggestion {row['suggestion_tokens']} tokens, "
        f"drafts {row['accepted_draft_tokens']}/{row['draft_tokens']}")
    return row, t0


async def _drain_to_file(session, path: Path) -> None:
    """`Session._drain_stderr`, also keeping the server's whole log in `path`."""
    stream = session.client._server.stderr
    with open(path, "ab") as f:
        while line := await stream.readline():
            f.write(line)
            f.flush()
            session.stderr_tail.append(line.decode("utf-8", "replace"))


def summarize(rows: list[dict]) -> dict:
    """Latency: first request, p50/p90 of the warm ones after it (as cpu.py), mean/p50/p90 of all.
    Per generated token: latency / tokens, so prefill and the LSP round trip included."""
    if not rows:
        return {}
    lat = [r["latency_s"] for r in rows]
    gen = [r["generated_tokens"] for r in rows]
    out = {**{k: v for k, v in latency_summary(lat).items() if k != "latencies_s"},
           "mean_s": sum(lat) / len(lat), "all_p50_s": percentile(lat, 0.5), "all_p90_s": percentile(lat, 0.9),
           "warm_mean_s": sum(lat[1:]) / max(1, len(lat) - 1),
           "generated_tokens": gen, "suggestion_tokens": [r["suggestion_tokens"] for r in rows],
           "finish_reasons": [r["finish_reason"] for r in rows],
           "requests_with_all_new_tokens": sum(g == REPLAY["new_tokens"] for g in gen),
           "suggestions_shown": sum(r["suggestion"] is not None for r in rows),
           "generated_tokens_per_s": sum(gen) / sum(lat)}
    warm = [r for r in rows[1:] if r["generated_tokens"]]
    if warm:
        out["warm_ms_per_generated_token_p50"] = 1000 * percentile(
            [r["latency_s"] / r["generated_tokens"] for r in warm], 0.5)
    return out


def compare_summary(passes: list[dict]) -> dict:
    """Per variant: the warm requests of all its passes pooled (each pass's first request, which
    prefills its 1,536-token prompt, left out), the counters summed; then before / after."""
    out = {}
    for variant in COMPARE:
        mine = [p for p in passes if p["variant"] == variant and p["requests"]]
        warm = [r["latency_s"] for p in mine for r in p["requests"][1:]]
        if not warm:
            continue
        out[variant] = {"passes": len(mine), "warm_requests": len(warm), "p50_s": percentile(warm, 0.5),
                        "p90_s": percentile(warm, 0.9), "mean_s": sum(warm) / len(warm),
                        "pass_p50_s": [summarize(p["requests"]).get("p50_s") for p in mine],
                        **{k: sum(p.get("counters", {}).get(k, 0) for p in mine) for k in COUNTERS},
                        "draft_tokens_proposed": sum(r.get("draft_tokens") or 0 for p in mine for r in p["requests"]),
                        "requests_with_all_new_tokens": sum(r["generated_tokens"] == REPLAY["new_tokens"]
                                                            for p in mine for r in p["requests"])}
    if len(out) == len(COMPARE):
        b, a = out["before"], out["after"]
        out["p50_before_over_after"] = b["p50_s"] / a["p50_s"]
        out["p90_before_over_after"] = b["p90_s"] / a["p90_s"]
        # Greedy either way, so the shown text should not change; count the requests where it did.
        firsts = {v: next(p for p in passes if p["variant"] == v) for v in COMPARE}
        pairs = list(zip(firsts["before"]["requests"], firsts["after"]["requests"]))
        out["same_suggestion"] = f"{sum(x['suggestion'] == y['suggestion'] for x, y in pairs)} of {len(pairs)}"
    return out


# --- main ----------------------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="phi-3-mini", choices=sorted(TOKENIZER_GGUF))
    p.add_argument("--precision", default="int8,bf16", help="comma-separated, each in its own server: "
                   + ", ".join(PRECISIONS) + " (bf16 = the server's bfloat16)")
    p.add_argument("--device", default=None, help="the server's device setting (default cuda; cpu with --tiny)")
    p.add_argument("--budget", type=float, default=480.0, help="seconds; a precision that won't fit is skipped")
    p.add_argument("--out", default=None, help="results JSON, rewritten after every request")
    p.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "quill-gpu-server"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tiny", action="store_true", help="2 layers of width 64, real vocabulary: a CPU smoke test")
    p.add_argument("--prepare", action="store_true", help="here, with network: fill .bench-offline/ and exit")
    p.add_argument("--restart", action="store_true",
                   help="after each precision's run, start its server again on the now warm compile cache")
    p.add_argument("--compare", action="store_true",
                   help="issue 19: in each precision's server, the replay before (stopEarly and promptLookup "
                        "off) and after (on), alternating --rounds times")
    p.add_argument("--rounds", type=int, default=2, help="with --compare: before/after pairs per server")
    p.add_argument("--checkpoint", default=None,
                   help="a real model (.gguf, HF folder or converted checkpoint) instead of random weights; "
                        "converted once under the workdir; --model then does not apply")
    args = p.parse_args(argv)
    args.device = args.device or ("cpu" if args.tiny else "cuda")
    bad = [x for x in args.precision.split(",") if x.strip() not in PRECISIONS]
    if bad:
        p.error(f"unknown precision(s) {', '.join(bad)}; use {', '.join(PRECISIONS)}")
    args.precisions = [PRECISIONS[x.strip()] for x in args.precision.split(",")]
    if args.checkpoint:
        args.model = Path(args.checkpoint).name.split(".")[0].lower()
    tag = f"{args.model}{'-tiny' if args.tiny else ''}"
    args.out = Path(args.out or RESULTS_DIR / f"gpu-server-{tag}-{time.strftime('%Y%m%d-%H%M%S')}.json")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.prepare:
        prepare([args.model])
        return 0
    workdir = Path(args.workdir)
    installed = install_offline(workdir / "site")
    if any(name.split("-")[0] in sys.modules for name in installed) and REEXEC not in os.environ:
        # typing_extensions (say) came in with torch already: start again on the new versions
        os.environ[REEXEC] = " ".join(installed)
        log("restarting on the installed packages")
        os.execv(sys.executable, [sys.executable, *sys.argv])
    installed = installed or os.environ.get(REEXEC, "").split()
    shape = None if args.checkpoint else model_shape(args.model, args.tiny)
    log_ = ResultLog(args.out, args.budget, {
        "kind": "gpu-server", "environment": environment(), "model": args.model, "tiny": args.tiny,
        "shape": shape, "replay": REPLAY, "offline_wheels_installed": installed, "runs": {}})
    if args.compare:
        log_.data.update(compare=COMPARE, rounds=args.rounds)
        if not args.checkpoint:
            log_.data["random_weights_note"] = RANDOM_NOTE
    scale = 0.0 if args.tiny else 1.0
    ckpt = workdir / f"ckpt-{args.model}{'-tiny' if args.tiny else ''}"
    with log_.stage("checkpoint", need_s=NEED_S["checkpoint"] * scale) as r:
        if r is not None and args.checkpoint:
            ckpt = real_checkpoint(Path(args.checkpoint), workdir, r)
            log_.data["shape"] = r["config"]
        elif r is not None:
            on_gpu = args.device.startswith("cuda") and torch.cuda.is_available()
            gen_device = args.device if on_gpu else "cpu"
            r.update(random_checkpoint(ckpt, shape, tokenizer_dir(args.model), gen_device, args.seed))
            log(f"checkpoint {'reused' if r['reused'] else 'written'}: {ckpt}")
    if not (ckpt / "quill.json").is_file():
        return 1
    from lsp_server.scheduler import DEBOUNCE_S
    from runtime.tokenizer import load_tokenizer

    tok = load_tokenizer(ckpt)
    text, source = real_python_text()
    docs = typed_documents(tok, text)
    log_.data.update(document=source, stop_ids=sorted(tok.stop_ids), server_debounce_s=DEBOUNCE_S,
                     tokenizer="the checkpoint's own" if args.checkpoint
                     else (tokenizer_dir(args.model) / "SOURCE.txt").read_text().strip())
    for precision in args.precisions:
        run_precision(log_, precision, args, ckpt, tok, docs, workdir, scale)
        if args.restart:
            run_precision(log_, precision, args, ckpt, tok, docs, workdir, scale, label=f"{precision}-warm-cache")
    log_.data["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    log_.flush()
    report(log_.data["runs"])
    log(f"wrote {args.out}")
    return 0


def run_precision(log_, precision, args, ckpt, tok, docs, workdir, scale, label: str | None = None) -> None:
    """One `quill serve` process in `precision`: start, wait for the model, the typing replay.
    The compile cache (under the workdir) persists, so a second run of a precision (`label`
    "...-warm-cache") shows the start with the cache warm."""
    label = label or precision
    settings = server_settings(ckpt, precision, args.device, workdir)
    passes = [(v, COMPARE[v]) for _ in range(args.rounds) for v in COMPARE] if args.compare else None
    run = log_.data["runs"][label] = {"settings": settings, "requests": []} if passes is None else {
        "settings": settings, "passes": []}
    server_log = args.out.with_name(f"{args.out.stem}-{label}-server.log")
    server_log.unlink(missing_ok=True)
    with log_.stage(f"server-{label}", need_s=NEED_S["server"] * scale) as r:
        if r is None:
            return
        run["server_log"] = str(server_log)
        try:
            asyncio.run(serve_and_replay(ckpt, tok, docs, settings, workdir, log_.deadline, run,
                                         log_.flush, server_log, passes))
        finally:
            if passes is not None:
                for entry in run["passes"]:
                    entry["summary"] = summarize(entry["requests"])
                run["compare"] = compare_summary(run["passes"])
                r.update(compare={k: v for k, v in run["compare"].items() if not isinstance(v, dict)},
                         model_ready_s=run.get("model_ready_s"))
                return
            run["summary"] = summarize(run["requests"])
            if run["requests"] and "model_ready_s" in run:
                # From spawning `quill serve` to the first suggestion in hand.
                run["summary"]["start_to_first_completion_s"] = (
                    run["model_ready_s"] + run["requests"][0]["latency_s"])
        r.update({k: run["summary"].get(k) for k in ("p50_s", "p90_s", "mean_s", "start_to_first_completion_s")},
                 model_ready_s=run.get("model_ready_s"))


def report(runs: dict) -> None:
    if any("passes" in run for run in runs.values()):
        return report_compare(runs)
    print("\nrun       ready_s start_s first_ms warm_p50_ms warm_p90_ms mean_ms warm_ms/token  "
          "generated tokens per request")
    for precision, run in runs.items():
        s = run.get("summary") or {}
        if not s:
            print(f"{precision:9} no requests: {run.get('stopped_early') or 'see the stages in the JSON'}")
        else:
            print(f"{precision:9} {run.get('model_ready_s', 0):7.1f} {s.get('start_to_first_completion_s', 0):7.1f} "
                  f"{1000 * s['first_request_s']:8.1f} "
                  f"{1000 * s['p50_s']:11.1f} {1000 * s['p90_s']:11.1f} {1000 * s['mean_s']:7.1f} "
                  f"{s.get('warm_ms_per_generated_token_p50', float('nan')):13.2f}  {s['generated_tokens']}",
                  flush=True)


def report_compare(runs: dict) -> None:
    print("\nrun       pass variant  warm_p50_ms warm_p90_ms generated shown drafts_accepted")
    for label, run in runs.items():
        for i, entry in enumerate(run.get("passes", []), 1):
            sm, c = entry.get("summary") or {}, entry.get("counters", {})
            print(f"{label:9} {i:4} {entry['variant']:7} {1000 * sm.get('p50_s', math.nan):11.1f} "
                  f"{1000 * sm.get('p90_s', math.nan):11.1f} {c.get('tokensGenerated', '-'):>9} "
                  f"{c.get('tokensShown', '-'):>5} {c.get('draftTokensAccepted', '-'):>15}")
        cmp = run.get("compare", {})
        if "p50_before_over_after" in cmp:
            print(f"{label:9} p50 before/after {cmp['p50_before_over_after']:.2f}x, p90 "
                  f"{cmp['p90_before_over_after']:.2f}x, same suggestion {cmp['same_suggestion']}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
