"""Count the instructions of `_gemv_kernel`'s main loop for Hopper, without a GPU.

Triton compiles for a target named by hand (sm_90 here), and its wheel carries `ptxas` and
`cuobjdump`, so the SASS of a config can be read on any Linux machine with Triton installed. An
int8 GEMV is bound by instructions, not bytes, so the loop's mix is what the configs in
`runtime/kernels/gemv.py` were chosen by: shared-memory traffic and barriers (an exchange of x between
threads), shuffles (a reduction across threads), and the arithmetic a step.

    python benchmarks/sass_count.py --n 9216 --k 3072 --config 8,1024,4,asm+v8+sum8 --norm
    python benchmarks/sass_count.py --n 9216 --k 3072 --config 8,512,4,asm+reduce --norm --sass out.sass

Prints the registers a thread, the shared memory, and the opcodes of the longest loop (the K
loop; an unrolled config has none, and its whole kernel is counted).
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # what the GPU's Triton does by default

SHOWN = ["LDG", "LDS", "STS", "STSM", "BAR", "SHFL", "FFMA", "FADD", "FMUL", "PRMT", "LOP3"]


def compile_kernel(n: int, k: int, config: tuple, norm: bool, gated: bool, cc: int = 90):
    """The compiled kernel of `gemv(x bf16, int8 weight [n, k], scales, config)` as `_launch`
    would launch it (dependent launch on, residual behind unless RMSNorm is in front)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from runtime.kernels import gemv as G

    block_k = min(config[1], triton.next_power_of_2(k))
    config = (config[0], block_k, *config[2:])
    fn = G._gemv_kernel
    signature = {"x_ptr": "*bf16", "w_ptr": "*i8", "s_ptr": "*bf16", "b_ptr": "*bf16", "r_ptr": "*bf16",
                 "g_ptr": "*bf16", "y_ptr": "*bf16", "N": "i32", "K": "i32", "K8": "i32", "eps": "fp32"}
    constants = dict(HAS_SCALE=True, HAS_BIAS=False, HAS_RESIDUAL=not norm, NORM=norm, HAS_G=norm, GATED=gated,
                     INT8_BITS=True, PDL=True, **G.block_flags(n, k, config))
    signature.update({name: "constexpr" for name in constants})
    # Pointers, N and K as a real launch specialises them (16-divisible); K8 is never specialised.
    attrs = {(fn.arg_names.index(name),): [["tt.divisibility", 16]]
             for name in fn.arg_names if name.endswith("_ptr") or name in ("N", "K")}
    source = ASTSource(fn, signature, {(fn.arg_names.index(c),): v for c, v in constants.items()}, attrs)
    return triton.compile(source, target=GPUTarget("cuda", cc, 128), options={"num_warps": config[2]})


def resources(cubin: bytes) -> dict:
    import triton

    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        out = subprocess.run([str(tool), "--dump-resource-usage", f.name], capture_output=True, text=True,
                             check=True).stdout
    return {key.lower(): int(re.search(rf"{key}:(\d+)", out).group(1)) for key in ("REG", "SHARED")}


def main_loop(sass: str) -> tuple[list[str], bool]:
    """The lines of the longest backward branch's body, or the whole kernel if it has none."""
    lines = sass.splitlines()
    labels = {line[:-1]: i for i, line in enumerate(lines) if re.fullmatch(r"\w+:", line)}
    best = None
    for i, line in enumerate(lines):
        m = re.search(r"BRA (\w+);", line)
        if m and labels.get(m.group(1), i) < i:
            body = lines[labels[m.group(1)]:i + 1]
            # (a kernel ends in a branch to itself, after its exit)
            if len(body) > 2 and (best is None or len(body) > len(best)):
                best = body
    return (best, True) if best else (lines, False)


def opcodes(lines: list[str]) -> collections.Counter:
    counts = collections.Counter()
    for line in lines:
        if "\t" not in line:
            continue
        fields = line.split("\t", 1)[1].split()
        op = fields[1] if fields[0].startswith("@") else fields[0]
        counts[op.split(".")[0]] += 1
    return counts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, required=True, help="output rows")
    p.add_argument("--k", type=int, required=True, help="inputs (row length)")
    p.add_argument("--config", default=None, help="BLOCK_N,BLOCK_K,warps,variant (default: the runtime's)")
    p.add_argument("--norm", action="store_true", help="RMSNorm in front")
    p.add_argument("--gated", action="store_true", help="SwiGLU in front")
    p.add_argument("--sass", default=None, help="also write the whole SASS here")
    args = p.parse_args(argv)

    from triton.tools.disasm import get_sass

    from runtime.kernels.gemv import _config

    if args.config:
        bn, bk, warps, *variant = args.config.split(",")
        config = (int(bn), int(bk), int(warps), variant[0] if variant else "")
    else:
        config = _config(args.n, args.k, 1, norm=args.norm, gated=args.gated)
    kernel = compile_kernel(args.n, args.k, config, args.norm, args.gated)
    sass = get_sass(kernel.asm["cubin"])
    if args.sass:
        Path(args.sass).write_text(sass)
    body, is_loop = main_loop(sass)
    ops = opcodes(body)
    res = resources(kernel.asm["cubin"])
    where = "loop" if is_loop else "kernel (no loop)"
    print(f"config {config}: {res['reg']} registers, {res['shared']} B shared; "
          f"{where}: {sum(ops.values())} instructions, " + ", ".join(f"{op} {ops[op]}" for op in SHOWN))
    return 0


if __name__ == "__main__":
    sys.exit(main())
