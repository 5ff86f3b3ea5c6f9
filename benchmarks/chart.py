"""Charts of benchmark result files (PNG next to the JSON, or `--out`).

    python benchmarks/chart.py benchmarks/results/gpu-....json
    python benchmarks/chart.py benchmarks/results/cpu-smollm2-2core.json

GPU files: per model, decode tok/s of every engine on each workload, labelled with the fraction
of the copy bandwidth measured in the same run; and time to first token. CPU files: decode tok/s,
prefill of 1,024 tokens and the typing-replay p50/p90 of every engine, the server's included.
Needs matplotlib (a benchmark-only dependency).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _bars(ax, groups: list[str], series: dict[str, list[float | None]], ylabel: str, labels=None):
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        xs = [g + i * width for g in range(len(groups))]
        ys = [v if v is not None else 0 for v in values]
        bars = ax.bar(xs, ys, width, label=name)
        for j, bar in enumerate(bars):
            text = labels[name][j] if labels else (f"{values[j]:.3g}" if values[j] is not None else "n/a")
            if text:
                ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                            ha="center", va="bottom", fontsize=7)
    ax.set_xticks([g + 0.4 - width / 2 for g in range(len(groups))], groups)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)


def gpu_chart(data: dict, out: Path) -> None:
    import matplotlib.pyplot as plt

    models = [m for m, e in data.get("models", {}).items() if e.get("engines")]
    if not models:
        raise SystemExit("no engine results in this file")
    fig, axes = plt.subplots(len(models), 2, figsize=(13, 4 * len(models)), squeeze=False)
    env = data.get("environment", {})
    for row, model in enumerate(models):
        engines = data["models"][model]["engines"]
        workloads = sorted({w for e in engines.values() for w, r in e.items() if isinstance(r, dict)},
                           key=["parity", "prefill", "completion", "chat", "typing"].index)
        decode = {e: [r.get(w, {}).get("decode_tok_s") for w in workloads] for e, r in engines.items()}
        labels = {e: [_fraction(r.get(w, {})) for w in workloads] for e, r in engines.items()}
        _bars(axes[row][0], workloads, decode, "decode tok/s", labels)
        axes[row][0].set_title(f"{model}: decode (label: share of copy bandwidth)")
        ttft = {e: [_ms(r.get(w, {})) for w in workloads] for e, r in engines.items()}
        _bars(axes[row][1], workloads, ttft, "ms")
        axes[row][1].set_title(f"{model}: time to first token (typing: p50 per request)")
    fig.suptitle(f"{env.get('device', '?')}, torch {env.get('torch', '?')}, "
                 f"copy {data.get('copy_bandwidth_GBps', 0):.0f} GB/s")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def _fraction(r: dict) -> str:
    f = r.get("fraction_of_copy_bw")
    return f"{f:.0%}" if f else ""


def _ms(r: dict) -> float | None:
    value = r.get("ttft_s", r.get("p50_s"))
    return value * 1e3 if value is not None else None


def cpu_chart(data: dict, out: Path) -> None:
    import matplotlib.pyplot as plt

    engines = data.get("engines", {})
    names = list(engines)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    _bars(axes[0], names, {"decode tok/s": [engines[n].get("decode", {}).get("decode_tok_s") for n in names]},
          "tok/s")
    axes[0].set_title("decode (higher is better)")
    _bars(axes[1], names, {"prefill 1,024 tokens": [engines[n].get("prefill", {}).get("seconds") for n in names]},
          "seconds")
    axes[1].set_title("prefill of 1,024 tokens (lower is better)")
    typing = dict(engines)
    if data.get("server"):
        dtype = data["server"].get("status", {}).get("dtype", "?")
        typing[f"quill serve ({dtype})"] = {"typing_engine": data["server"]}
    tnames = [n for n in typing if typing[n].get("typing_engine")]
    _bars(axes[2], tnames, {q: [typing[n]["typing_engine"].get(f"{q}_s", 0) * 1e3 for n in tnames]
                            for q in ("p50", "p90")}, "ms")
    axes[2].set_title("typing replay: 512-token prefix, +8 tokens, 32 new")
    for ax in axes:
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    env = data.get("environment", {})
    fig.suptitle(f"SmolLM2-135M-Instruct on {env.get('cpu_threads', '?')} CPU threads, torch {env.get('torch', '?')}")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("result", type=Path)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    data = json.loads(args.result.read_text(encoding="utf-8"))
    out = args.out or args.result.with_suffix(".png")
    (gpu_chart if data.get("kind") == "gpu" else cpu_chart)(data, out)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
