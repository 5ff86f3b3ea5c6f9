"""A CPU matrix-vector kernel for `GridInt4Linear` (4-bit codes, float32 activations).

Decode of the default CPU model is one matrix-vector product per linear. Inductor's own loop for
`(codes * scale + zero) * x` keeps one vector accumulator per output row, so every step waits
for the previous add: measured about 7 G weights/s on two cores (`benchmarks/README.md`). This
kernel reads the codes packed two to a byte (decode on two cores is then memory-bound: the
bytes are what count), works on four output rows at once with independent accumulators, and
takes scale and zero out of the inner loop: sum(w x) = sum over groups of scale * sum(code * x)
+ zero * sum(x). The weights are the same as the float32 model's; only the order of the float32
sums differs. AVX-512 where the build has it, plain C++ otherwise. It is built once through
Inductor's own C++ code cache (with the vector flags Inductor picked for this CPU), so it needs
nothing that `torch.compile` on CPU does not need already.

`grid_int4_gemv` is a torch custom op, so a compiled decode step calls it as one opaque kernel;
`available()` is False when the build fails (no compiler, an older torch), and the caller keeps
its pure-PyTorch expression then.
"""

from __future__ import annotations

import logging
import threading

import torch

log = logging.getLogger(__name__)

GROUP = 32
ROWS = 4  # output rows per loop: independent accumulators

_SOURCE = r"""
#include <torch/csrc/inductor/cpp_prefix.h>
#if defined(__AVX512F__) && !defined(QUILL_PLAIN_CPP)
#include <immintrin.h>
#endif
// codes: [N, K/2] bytes; in each group of 32 inputs, byte j holds code j (low nibble) and code
// j + 16 (high nibble).  sum(w * x) = sum_g scale_g * sum_j code_j x_j + zero_g * sum_j x_j.
extern "C" void kernel(const float* x, const uint8_t* codes, const float* scales,
                       const float* zeros, float* y, const int64_t N, const int64_t K)
{
    const int64_t G = K / 32, B = K / 2;
    std::vector<float> xsum(G);
    for (int64_t g = 0; g < G; g++) {
        float t = 0;
        for (int64_t j = 0; j < 32; j++) t += x[g * 32 + j];
        xsum[g] = t;
    }
    #pragma omp parallel for
    for (int64_t n0 = 0; n0 < N; n0 += 4) {
        float zacc[4] = {0, 0, 0, 0};
#if defined(__AVX512F__) && !defined(QUILL_PLAIN_CPP)
        __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
        const __m128i low4 = _mm_set1_epi8(0x0F);
        for (int64_t g = 0; g < G; g++) {
            const __m512 xlo = _mm512_loadu_ps(x + g * 32), xhi = _mm512_loadu_ps(x + g * 32 + 16);
            for (int r = 0; r < 4; r++) {
                const __m128i b = _mm_loadu_si128((const __m128i*)(codes + (n0 + r) * B + g * 16));
                const __m512 qlo = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(b, low4)));
                const __m512 qhi = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(b, 4), low4)));
                const __m512 dot = _mm512_fmadd_ps(qhi, xhi, _mm512_mul_ps(qlo, xlo));
                acc[r] = _mm512_fmadd_ps(dot, _mm512_set1_ps(scales[(n0 + r) * G + g]), acc[r]);
                zacc[r] += zeros[(n0 + r) * G + g] * xsum[g];
            }
        }
        for (int r = 0; r < 4; r++) y[n0 + r] = _mm512_reduce_add_ps(acc[r]) + zacc[r];
#else
        float acc[4] = {0, 0, 0, 0};
        for (int64_t g = 0; g < G; g++) {
            for (int r = 0; r < 4; r++) {
                const uint8_t* b = codes + (n0 + r) * B + g * 16;
                float dot = 0;
                for (int j = 0; j < 16; j++)
                    dot += float(b[j] & 15) * x[g * 32 + j] + float(b[j] >> 4) * x[g * 32 + 16 + j];
                acc[r] += dot * scales[(n0 + r) * G + g];
                zacc[r] += zeros[(n0 + r) * G + g] * xsum[g];
            }
        }
        for (int r = 0; r < 4; r++) y[n0 + r] = acc[r] + zacc[r];
#endif
    }
}
"""

_lock = threading.Lock()
_kernel = None
_failed = False


def compile_kernel(plain: bool = False):
    """Build the kernel (cached on disk by Inductor). `plain` leaves out the AVX-512 path, as a
    CPU without it gets (the tests check both)."""
    from torch._inductor.codecache import CppPythonBindingsCodeCache

    source = ("#define QUILL_PLAIN_CPP\n" if plain else "") + _SOURCE
    return CppPythonBindingsCodeCache.load_pybinding(
        ["const float*", "const uint8_t*", "const float*", "const float*", "float*",
         "const int64_t", "const int64_t"], source)


def _build():
    """The kernel for this process, built on first use (a second or two the first time)."""
    global _kernel, _failed
    with _lock:
        if _kernel is None and not _failed:
            try:
                _kernel = compile_kernel()
            except Exception as exc:  # noqa: BLE001 - no compiler, or the internal API moved
                _failed = True
                log.info("4-bit CPU kernel unavailable (%s); using the PyTorch expression", exc)
    return _kernel


def available() -> bool:
    return _build() is not None


def supports(out_features: int, in_features: int, group_size: int) -> bool:
    return group_size == GROUP and out_features % ROWS == 0 and in_features % GROUP == 0


@torch.library.custom_op("quill::grid_int4_gemv", mutates_args=())
def grid_int4_gemv(x: torch.Tensor, codes: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor) -> torch.Tensor:
    """x [1, K] float32, codes [N, K/2] packed (`quantize._pack_nibbles`), scales and zeros
    [N, K/32] float32 -> [1, N]."""
    n, k = codes.shape[0], codes.shape[1] * 2
    y = torch.empty(1, n, dtype=torch.float32)
    _build()(x.contiguous(), codes, scales, zeros, y, n, k)
    return y


@grid_int4_gemv.register_fake
def _(x, codes, scales, zeros):
    return x.new_empty(1, codes.shape[0])
