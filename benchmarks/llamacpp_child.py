"""llama.cpp side of `benchmarks/cpu.py`, run by the benchmark's own virtualenv (llama_cpp only).

Reads a JSON job on stdin ({"gguf", "threads", "n_ctx", "decode_prompt", "new_tokens",
"prefill_prompt", "typing": {"tokens", "start", "step", "requests", "new_tokens"}, "runs"}) and
prints one JSON line of results. Greedy (top_k=1, temp=0), stop tokens ignored: generation is
driven token by token through `Llama.generate`, which also reuses the longest cached prefix
(llama-cpp-python compares the new prompt with the tokens it has evaluated), as Quill does.
"""

from __future__ import annotations

import json
import statistics
import sys
import time


def generate(llm, tokens, n):
    """(seconds to first token, seconds for all n) for n greedy tokens after `tokens`."""
    t0 = time.perf_counter()
    first = None
    count = 0
    for _ in llm.generate(tokens, top_k=1, top_p=1.0, min_p=0.0, temp=0.0):
        count += 1
        if first is None:
            first = time.perf_counter() - t0
        if count >= n:
            break
    return first, time.perf_counter() - t0


def main() -> int:
    job = json.loads(sys.stdin.read())
    from llama_cpp import Llama

    llm = Llama(job["gguf"], n_ctx=job["n_ctx"], n_batch=512, n_threads=job["threads"],
                n_threads_batch=job["threads"], verbose=False)
    out = {"llama_cpp_version": __import__("llama_cpp").__version__}
    n = job["new_tokens"]
    generate(llm, job["decode_prompt"], 8)  # warm-up
    firsts, totals = [], []
    for _ in range(job["runs"]):
        first, total = generate(llm, job["decode_prompt"], n)
        firsts.append(first)
        totals.append(total)
    ttft, total = statistics.median(firsts), statistics.median(totals)
    out["decode"] = {"ttft_s": ttft, "total_s": total, "new_tokens": n,
                     "decode_tok_s": (n - 1) / (total - ttft), "runs_total_s": totals}
    prefill = []
    for _ in range(job["runs"]):
        llm.reset()
        prefill.append(generate(llm, job["prefill_prompt"], 1)[0])
    out["prefill"] = {"tokens": len(job["prefill_prompt"]), "seconds": statistics.median(prefill),
                      "runs_s": prefill}
    t = job["typing"]
    llm.reset()
    latencies = []
    for i in range(t["requests"]):
        prompt = t["tokens"][: t["start"] + i * t["step"]]
        latencies.append(generate(llm, prompt, t["new_tokens"])[1])  # reuses the cached prefix
    out["typing_engine"] = {"latencies_s": latencies}
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
