"""CPU benchmark: Quill vs Hugging Face transformers vs llama.cpp on the same SmolLM2 GGUF.

    python benchmarks/cpu.py                       # everything, writes benchmarks/results/cpu-*.json
    python benchmarks/cpu.py --stages quill,agreement --out /tmp/x.json

Stages (each recorded in the JSON, errors included, the file rewritten after each):
    llamacpp   llama-cpp-python 0.3.36 built from source in its own venv (`bench_venv.py`)
    hf         transformers loading the GGUF itself (dequantized, float32, eager)
    quill      the engine as `Engine.load` gives it ("default": on a CPU float32 activations with
               the GGUF's 4-bit weights kept as codes, compiled decode = float32-int4), plain
               float32, and other fast paths (bfloat16 activations, compiled decode; int4 weights
               with a head whose top-8 logits are recomputed in float32 = "fast-int4-rescored";
               fast-int4, fast-int8, bf16 on request)
    agreement  each variant vs plain float32: greedy continuations (32 tokens) of 10 prompts
    server     `quill serve` over stdio, default settings: inline completions while "typing" a
               real Python file, once as the server was before streamed post-processing and
               prompt lookup (`stopEarly` and `promptLookup` off) and once as it is, each with
               the tokens generated and shown and the draft tokens accepted (`quill/status`)
    first_use  the real `quill try` from an empty model cache (GGUF -> checkpoint, load,
               compile), its phases, the first suggestion and the chat's tokens/s

`--as-avx2` stands in for an AVX2-only CPU on a machine with AVX-512: Quill's kernels, PyTorch's
dispatch (`ATEN_CPU_CAPABILITY`), Inductor's generated code (`-march=x86-64-v3`), oneDNN, MKL and
the llama.cpp build are all capped at AVX2. The CPU is the same otherwise (caches, clock), so a
real AVX2 CPU of another make will differ; the result file records the caps.

Numbers per engine: decode tok/s (short prompt, 128 tokens, stop tokens ignored), prefill time
of 1,024 tokens (a real Python file), and a typing replay at the engine level (512-token prefix,
+8 tokens per request, 32 new tokens, prefix reuse). The machine is shared: before each timed
part the script waits (up to a minute) for the CPU to be idle and records how busy it was.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# Caps that make this process and its children run the code an AVX2-only CPU runs; set before
# torch loads (its dispatcher reads ATEN_CPU_CAPABILITY once).
AVX2_STAND_IN = {"QUILL_CPU_KERNEL": "avx2", "ATEN_CPU_CAPABILITY": "avx2", "TORCHINDUCTOR_CPP_MARCH": "x86-64-v3",
                 "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
if "--as-avx2" in sys.argv:
    os.environ.update(AVX2_STAND_IN)

import torch  # noqa: E402

from bench_venv import ensure_llama_cpp  # noqa: E402
from common import REPO_ROOT, RESULTS_DIR, ResultLog, environment  # noqa: E402
from runtime.workloads import percentile  # noqa: E402

STAGES = ("llamacpp", "hf", "quill", "agreement", "server", "first_use")
DECODE_TOKENS, PREFILL_TOKENS = 128, 1024
TYPING = {"start": 512, "step": 8, "requests": 20, "new_tokens": 32}
FAST_MAX_SEQ = 2048  # the fast path's KV cache: chat (1,500 + 512) and completions fit


def cpu_busy(interval: float = 0.5) -> float:
    """Fraction of all CPUs busy over `interval` (Linux /proc/stat; 0.0 elsewhere)."""
    def read():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]
    try:
        t1, i1 = read()
        time.sleep(interval)
        t2, i2 = read()
    except OSError:
        return 0.0
    return 1 - (i2 - i1) / max(1, t2 - t1)


def wait_quiet(threshold: float = 0.2, max_wait: float = 60.0) -> float:
    """Wait until other processes leave the CPU mostly idle; return the last busy fraction."""
    t0, busy = time.monotonic(), cpu_busy()
    while busy > threshold and time.monotonic() - t0 < max_wait:
        busy = cpu_busy()
    return busy


def test_assets():
    sys.path.insert(0, str(REPO_ROOT))
    from tests import assets

    return assets


def real_python_text() -> tuple[str, str]:
    """A real, long Python file that every CPython install has."""
    path = Path(sysconfig.get_paths()["stdlib"]) / "argparse.py"
    return path.read_text(encoding="utf-8"), f"stdlib/argparse.py (Python {sys.version.split()[0]})"


def checkpoint_for(gguf: Path, cache_dir: Path) -> Path:
    from runtime.store import resolve_model

    return resolve_model(str(gguf), cache_dir=cache_dir)


# --- Quill -------------------------------------------------------------------------------------


def load_quill(ckpt: Path, variant: str):
    """variant: "default" (Engine.load as a second start has it), "float32", "bf16", or "fast-<mode>" (bf16
    activations, `runtime.quantize` mode: int4-rescored, int4, int4-f32head, int8; decode compiled)."""
    from runtime.compile import compile_model
    from runtime.engine import Engine
    from runtime.quantize import quantize

    if variant == "default":
        # The default as every start after the first runs it: the whole-model graph (a first
        # start compiles per layer; the first_use stage measures that one).
        return Engine.load(ckpt, device="cpu", compile="whole")
    if variant == "float32":
        return Engine.load(ckpt, device="cpu", precision="float32")
    engine = Engine.load(ckpt, device="cpu", precision="bfloat16", max_seq_length=FAST_MAX_SEQ)
    if variant.startswith("fast-"):
        quantize(engine.model, variant.removeprefix("fast-"))
        engine.model = compile_model(engine.model)  # decode compiled; prefill stays eager on CPU
    return engine


def time_generate(engine, prompt: list[int], n: int) -> tuple[float, float]:
    """(seconds to the first token, seconds for n tokens) from an empty cache, no stop ids."""
    from runtime.workloads import untokenized
    from runtime.engine import GenerationConfig

    bare = untokenized(engine)
    times = []
    for k in (1, n):
        bare.reset()
        t0 = time.perf_counter()
        out = bare.generate(prompt, GenerationConfig(max_new_tokens=k))
        times.append(time.perf_counter() - t0)
        assert len(out.token_ids) == k
    bare.reset()
    return times[0], times[1]


def engine_typing(engine, tokens: list[int]) -> list[float]:
    """Engine-level typing replay with prefix reuse; latency of each request."""
    from runtime.workloads import untokenized
    from runtime.engine import GenerationConfig

    bare = untokenized(engine)
    bare.reset()
    lat = []
    for i in range(TYPING["requests"]):
        prompt = tokens[: TYPING["start"] + i * TYPING["step"]]
        t0 = time.perf_counter()
        bare.generate(prompt, GenerationConfig(max_new_tokens=TYPING["new_tokens"]))
        lat.append(time.perf_counter() - t0)
    bare.reset()
    return lat


def measure_quill(engine, prompts: dict, runs: int) -> dict:
    time_generate(engine, prompts["decode"], 16)  # warm-up (compiles on a fresh process)
    firsts, totals, busy = [], [], []
    for _ in range(runs):
        busy.append(wait_quiet())
        first, total = time_generate(engine, prompts["decode"], DECODE_TOKENS)
        firsts.append(first)
        totals.append(total)
    ttft, total = statistics.median(firsts), statistics.median(totals)
    res = {"decode": {"ttft_s": ttft, "total_s": total, "new_tokens": DECODE_TOKENS,
                      "decode_tok_s": (DECODE_TOKENS - 1) / (total - ttft), "runs_total_s": totals,
                      "best_decode_tok_s": max((DECODE_TOKENS - 1) / (t - f) for f, t in zip(firsts, totals))}}
    prefill = []
    for _ in range(runs):
        busy.append(wait_quiet())
        prefill.append(time_generate(engine, prompts["prefill"], 1)[0])
    res["prefill"] = {"tokens": len(prompts["prefill"]), "seconds": statistics.median(prefill), "runs_s": prefill}
    busy.append(wait_quiet())
    res["typing_engine"] = latency_summary(engine_typing(engine, prompts["typing"]))
    res["cpu_busy_before_runs"] = busy
    res["threads"] = torch.get_num_threads()
    return res


def latency_summary(lat: list[float]) -> dict:
    rest = lat[1:]
    return {"first_request_s": lat[0], "p50_s": percentile(rest, 0.5), "p90_s": percentile(rest, 0.9),
            "latencies_s": lat}


# --- peers ------------------------------------------------------------------------------------


def measure_llamacpp(gguf: Path, prompts: dict, runs: int, threads: int) -> dict:
    python = ensure_llama_cpp(log=lambda m: print(f"[bench] {m}", flush=True))
    job = {"gguf": str(gguf), "threads": threads, "n_ctx": FAST_MAX_SEQ, "runs": runs,
           "decode_prompt": prompts["decode"], "new_tokens": DECODE_TOKENS,
           "prefill_prompt": prompts["prefill"], "typing": {"tokens": prompts["typing"], **TYPING}}
    busy = wait_quiet()
    proc = subprocess.run([str(python), str(Path(__file__).with_name("llamacpp_child.py"))],
                          input=json.dumps(job), capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"llama.cpp child failed: {describe_exit(proc)}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["typing_engine"] = latency_summary(res["typing_engine"]["latencies_s"])
    res["cpu_busy_before"] = busy
    res["threads"] = threads
    return res


def describe_exit(proc: subprocess.CompletedProcess) -> str:
    """How a child process ended, in words: its exit code or the signal that killed it (an
    illegal instruction is a build for features this CPU lacks), and the end of its stderr."""
    code = proc.returncode
    if code < 0:
        try:
            how = f"killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"killed by signal {-code}"
        if -code == signal.SIGILL:
            how += " (an instruction this CPU lacks: the build names features the CPU does not have)"
    else:
        how = f"exit code {code}"
    tail = (proc.stderr or "").strip()[-2000:]
    return f"{how}; stderr: {tail}" if tail else f"{how}; no output on stderr"


def measure_hf(gguf: Path, prompts: dict, runs: int) -> dict:
    """transformers' own GGUF reader (dequantized to float32), eager, greedy. The steps of
    `from_pretrained(..., gguf_file=)` without its `accelerate` requirement (as the store tests do)."""
    import transformers
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    config = dict(load_gguf_checkpoint(str(gguf))["config"])
    config = transformers.AutoConfig.for_model(config.pop("model_type"), **config)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    tensors = load_gguf_checkpoint(str(gguf), return_tensors=True, model_to_load=model)["tensors"]
    model.load_state_dict(tensors, strict=False)
    if config.tie_word_embeddings:
        model.tie_weights()
    model.generation_config.eos_token_id = None

    def gen(prompt, n):
        ids = torch.tensor([prompt])
        t0 = time.perf_counter()
        with torch.no_grad():
            model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                           do_sample=False, pad_token_id=0)
        return time.perf_counter() - t0

    n = 32  # eager transformers is slow here: fewer tokens, same per-token rate
    gen(prompts["decode"], 4)
    busy = [wait_quiet()]
    first = statistics.median([gen(prompts["decode"], 1) for _ in range(runs)])
    total = statistics.median([gen(prompts["decode"], n) for _ in range(runs)])
    busy.append(wait_quiet())
    prefill = [gen(prompts["prefill"], 1) for _ in range(max(1, runs - 1))]
    return {"transformers": transformers.__version__, "dtype": "float32", "cpu_busy_before_runs": busy,
            "decode": {"ttft_s": first, "total_s": total, "new_tokens": n, "decode_tok_s": (n - 1) / (total - first)},
            "prefill": {"tokens": len(prompts["prefill"]), "seconds": statistics.median(prefill), "runs_s": prefill}}


# --- agreement --------------------------------------------------------------------------------

AGREEMENT_PROMPTS = [
    "def fibonacci(n):\n",
    "import os\n\ndef list_python_files(folder):\n",
    "The capital of France is",
    "class Stack:\n    def __init__(self):\n",
    "Write a haiku about the sea.\n",
    "for i in range(10):\n",
    "# Read a JSON file and print its keys\nimport json\n",
    "Once upon a time, in a small village,",
    "SELECT name, email FROM users WHERE",
    "def is_prime(n: int) -> bool:\n    \"\"\"Return True if n is prime.\"\"\"\n",
]


def greedy(engine, ids: list[int], n: int = 32) -> list[int]:
    from runtime.workloads import untokenized
    from runtime.engine import GenerationConfig

    bare = untokenized(engine)
    bare.reset()
    return bare.generate(ids, GenerationConfig(max_new_tokens=n)).token_ids


def agreement(reference, candidate, tokenizer) -> dict:
    """Per prompt: do the 32-token greedy continuations match exactly; how long is the common
    prefix. Also the share of the 32 positions equal (a softer view)."""
    rows = []
    for text in AGREEMENT_PROMPTS:
        ids = ([tokenizer.bos_id] if tokenizer.add_bos and tokenizer.bos_id is not None else []) + tokenizer.encode(text)
        ref, got = greedy(reference, ids), greedy(candidate, ids)
        common = next((i for i, (a, b) in enumerate(zip(ref, got)) if a != b), min(len(ref), len(got)))
        rows.append({"prompt": text, "identical": ref == got, "common_prefix": common,
                     "reference": tokenizer.decode(ref), "candidate": tokenizer.decode(got)})
    return {"identical_fraction": sum(r["identical"] for r in rows) / len(rows),
            "mean_common_prefix_fraction": sum(r["common_prefix"] for r in rows) / (32 * len(rows)),
            "rows": rows}


# --- the real server ------------------------------------------------------------------------


async def server_typing(ckpt: Path, text: str, precision: str, workdir: Path, completion: dict) -> dict:
    """Type a real Python file into `quill serve` and time each inline completion (client side).
    `completion`: the `quill.completion` settings on top of the server's defaults."""
    from lsprotocol import types

    from quill_cli.lsp_session import Session
    from runtime.tokenizer import load_tokenizer

    tok = load_tokenizer(ckpt)
    ids = tok.encode(text)
    # The cursor starts after a 512-token prefix; each request types the next 8 tokens' text.
    cuts = [len(tok.decode(ids[: TYPING["start"] + i * TYPING["step"]])) for i in range(TYPING["requests"])]
    session = Session(lambda d: None, lambda t: None)
    settings = {"checkpointPath": str(ckpt), "device": "cpu", "precision": precision, "history": False,
                "dataDir": str(workdir / "data"), "completion": completion}
    t_start = time.perf_counter()
    await start_server(session, {"quill": settings}, workdir)
    status = await session.wait_ready()
    ready_s = time.perf_counter() - t_start
    uri = (workdir / "replay.py").as_uri()
    from lsp_server.scheduler import DEBOUNCE_S

    lat, texts = [], []
    pace_until = 0.0
    try:
        for i, cut in enumerate(cuts):
            doc = text[:cut]
            if i == 0:
                session.open(uri, doc)
            else:
                session.client.text_document_did_change(types.DidChangeTextDocumentParams(
                    text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=i + 1),
                    content_changes=[types.TextDocumentContentChangeWholeDocument(text=doc)]))
            line = doc.count("\n")
            character = len(doc) - (doc.rfind("\n") + 1)
            busy = wait_quiet(max_wait=20)
            # No request within the server's debounce of the one before (untimed): a suggestion
            # stopped early comes back in well under it, and typing is slower than that anyway.
            await asyncio.sleep(max(0.0, pace_until - time.perf_counter()))
            t0 = time.perf_counter()
            pace_until = t0 + DEBOUNCE_S + 0.02
            suggestion = await session.inline_completion(uri, line, character)
            lat.append(time.perf_counter() - t0)
            texts.append({"busy": round(busy, 2), "suggestion": suggestion})
        final = await session.request("quill/status", {})
    finally:
        await session.stop()
    tokens = {k: final.get(k) for k in ("tokensGenerated", "tokensShown", "draftTokensAccepted", "cpuKernel")}
    return {"model_ready_s": ready_s, "status": status, "final_status": final, "precision_setting": precision,
            "completion_settings": completion, **tokens, **latency_summary(lat), "suggestions": texts}


SERVER_RUNS = {  # the same replay, as the server was before #19's changes and as it is
    "before": {"stopEarly": False, "promptLookup": False},
    "after": {},
}


def first_use(gguf: Path, workdir: Path) -> dict:
    """`quill try` from an empty model cache, as a new user runs it; its own report, parsed."""
    env = dict(os.environ, QUILL_CACHE_DIR=str(workdir / "cache"), QUILL_DATA_DIR=str(workdir / "data"))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-P", "-m", "quill_cli", "try", "--model", str(gguf)],
                          capture_output=True, text=True, env=env, timeout=1800, cwd=str(workdir))
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"quill try failed: {describe_exit(proc)}")
    out = proc.stdout
    res = {"wall_s": wall, "stdout": out}
    for line in out.splitlines():
        words = line.split()
        if line.startswith("model ready"):
            res["model_ready_s"] = float(words[2]) / 1000
        elif line.startswith("  ... "):
            res.setdefault("phases", []).append({"phase": " ".join(words[1:-2]), "at_s": float(words[-2]) / 1000})
        elif line.startswith("--- suggestion ("):
            res["first_suggestion_s"] = float(line.split("(")[1].split()[0]) / 1000
        elif line.startswith("chat turn"):
            res["chat_tokens_per_s"] = float(line.split(" tokens/s")[0].rsplit(" ", 1)[1])
            res["chat_line"] = line.strip()
        elif "CPU kernel path" in line:
            res["cpu_kernel"] = words[-1]
    return res


async def start_server(session, options: dict, workdir: Path) -> None:
    """`Session.start` of `quill_cli.lsp_session`, with initializationOptions (the editor's way)."""
    from lsprotocol import types

    from quill_cli.lsp_session import CAPABILITIES

    await session.client.start_io(sys.executable, "-P", "-m", "quill_cli", "serve")
    session._stderr_task = asyncio.ensure_future(session._drain_stderr())
    folder = types.WorkspaceFolder(uri=workdir.as_uri(), name=workdir.name)
    await session.client.initialize_async(types.InitializeParams(
        capabilities=CAPABILITIES, workspace_folders=[folder], root_uri=folder.uri,
        initialization_options=options))
    session.client.initialized(types.InitializedParams())


# --- main -------------------------------------------------------------------------------------


def build_prompts(ckpt: Path) -> dict:
    from runtime.tokenizer import load_tokenizer

    tok = load_tokenizer(ckpt)
    text, source = real_python_text()
    ids = tok.encode(text)
    need = TYPING["start"] + TYPING["step"] * TYPING["requests"]
    return {"decode": tok.encode("def quicksort(arr):\n"), "prefill": ids[:PREFILL_TOKENS],
            "typing": ids[:need], "source": source, "text": text}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated: {', '.join(STAGES)}")
    p.add_argument("--quill-variants", default="default,float32,fast-int4-rescored")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    p.add_argument("--server-precision", default="auto")
    p.add_argument("--out", default=str(RESULTS_DIR / f"cpu-{time.strftime('%Y%m%d-%H%M%S')}.json"))
    p.add_argument("--budget", type=float, default=3600.0)
    p.add_argument("--as-avx2", action="store_true",
                   help="cap Quill, PyTorch, Inductor and the llama.cpp build at AVX2 (see above)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    stages = set(args.stages.split(","))
    torch.set_num_threads(args.threads)
    gguf = test_assets().smollm2_gguf()
    cache = Path(tempfile.mkdtemp(prefix="quill-cpu-bench-"))
    log = ResultLog(Path(args.out), args.budget, {"kind": "cpu", "environment": environment(), "engines": {}})
    with log.stage("convert") as r:
        ckpt = checkpoint_for(gguf, cache / "models")
        prompts = build_prompts(ckpt)
        r.update(gguf=gguf.name, prompt_source=prompts["source"], prefill_tokens=len(prompts["prefill"]))
    engines = log.data["engines"]
    if "llamacpp" in stages:
        with log.stage("llamacpp") as r:
            engines["llama.cpp"] = measure_llamacpp(gguf, prompts, args.runs, args.threads)
            r.update(summarize(engines["llama.cpp"]))
    if "hf" in stages:
        with log.stage("hf") as r:
            engines["transformers"] = measure_hf(gguf, prompts, args.runs)
            r.update(summarize(engines["transformers"]))
    loaded = {}
    for variant in args.quill_variants.split(","):
        if "quill" not in stages and "agreement" not in stages:
            continue
        with log.stage(f"quill-{variant}") as r:
            t0 = time.perf_counter()
            loaded[variant] = load_quill(ckpt, variant)
            r["load_s"] = time.perf_counter() - t0
            if "quill" in stages:
                engines[f"quill-{variant}"] = measure_quill(loaded[variant], prompts, args.runs)
                r.update(summarize(engines[f"quill-{variant}"]))
    if "agreement" in stages:
        for variant in [v for v in loaded if v != "float32"]:
            with log.stage(f"agreement-{variant}") as r:
                res = agreement(loaded["float32"], loaded[variant], loaded["float32"].tokenizer)
                log.data.setdefault("agreement", {})[variant] = res
                r.update(identical_fraction=res["identical_fraction"])
    loaded.clear()
    if "server" in stages:
        for name, completion in SERVER_RUNS.items():
            with log.stage(f"server-{name}") as r:
                work = Path(tempfile.mkdtemp(prefix="quill-cpu-server-"))
                res = asyncio.run(server_typing(ckpt, prompts["text"], args.server_precision, work, completion))
                log.data.setdefault("server", {})[name] = res
                r.update({k: res[k] for k in ("model_ready_s", "p50_s", "p90_s", "tokensGenerated",
                                              "tokensShown", "draftTokensAccepted")})
    if "first_use" in stages:
        with log.stage("first_use") as r:
            res = first_use(gguf, Path(tempfile.mkdtemp(prefix="quill-cpu-first-use-")))
            log.data["first_use"] = res
            r.update({k: res.get(k) for k in ("model_ready_s", "first_suggestion_s", "chat_tokens_per_s", "cpu_kernel")})
    log.data["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    log.flush()
    print(f"[bench] wrote {args.out}")
    return 0


def summarize(res: dict) -> dict:
    out = {}
    if "decode" in res:
        out["decode_tok_s"] = res["decode"]["decode_tok_s"]
    if "prefill" in res:
        out["prefill_s"] = res["prefill"]["seconds"]
    if "typing_engine" in res:
        out["typing_p50_s"] = res["typing_engine"]["p50_s"]
        out["typing_p90_s"] = res["typing_engine"]["p90_s"]
    return out


if __name__ == "__main__":
    sys.exit(main())
