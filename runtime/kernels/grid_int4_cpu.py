"""A CPU kernel for `GridInt4Linear` (4-bit codes, float32 activations), one path per CPU kind.

Decode of the default CPU model is one matrix-vector product per linear. Inductor's own loop for
`(codes * scale + zero) * x` keeps one vector accumulator per output row, so every step waits
for the previous add: measured about 7 G weights/s on two cores (`benchmarks/README.md`). This
kernel reads the codes packed two to a byte, widens each group's 16 bytes once and splits the
nibbles in 32-bit lanes (one zero-extending load, an AND and a shift), works on four output rows
at once with independent accumulators, and takes scale and zero out of the inner loop:
sum(w x) = sum over groups of scale * sum(code * x) + zero * sum(x).

Paths, chosen at run time from what this CPU reports (`cpu_features.py`), never from the flags
of the machine that built them: AVX-512 (16 lanes), AVX2 + FMA (8 lanes; most laptops and many
servers), and plain C++. All three live in one build: each vector function carries its own
`target` attribute, so the build needs no CPU flags and the same library serves every CPU.

Several rows of x (prefill of a few typed characters, a speculative draft's verification) share
one widening of the weights: for each group and output row the codes are converted once and
multiplied with up to 4 x rows (2 on AVX2, for its 16 registers) whose accumulators stay in
registers (single-thread on Zen 4: 4 rows cost 2.7-3x one row's time, not 4x). Each (x row, output row) pair goes through the same operations in
the same order whatever the number of x rows, so a row's result does not depend on its batch:
verifying drafts gives bit for bit the logits that decoding one token at a time gives.

The library is built once through Inductor's C++ code cache (cached on disk), so it needs
nothing that `torch.compile` on CPU does not need already. `quill::grid_int4_mm` is a torch
operator, so a compiled decode step calls it as one opaque kernel; `available()` is False when the build
fails (no compiler, an older torch), and the caller keeps its PyTorch expression then.
"""

from __future__ import annotations

import logging
import threading

import torch

from . import cpu_features

log = logging.getLogger(__name__)

GROUP = 32
ROWS = 4  # output rows per tile: independent accumulators
MAX_ROWS_OF_X = 64  # more x rows than this: dequantize once and use the float32 matmul
PATH_IDS = {"plain": 0, "avx2": 1, "avx512": 2}

_SOURCE = r"""
#include <immintrin.h>
#include <cstdint>
#include <vector>

// codes: [N, K/2] bytes; in each group of 32 inputs, byte j holds code j (low nibble) and code
// j + 16 (high nibble).  y[m, n] = sum_g scale[n,g] * sum_j code[n,j] x[m,j] + zero[n,g] * xsum[m,g].
namespace {
constexpr int R = 4;        // output rows per tile

template <int MB>
void tile_plain(const float* x, const uint8_t* codes, const float* scales, const float* zeros,
                const float* xsum, float* y, int64_t N, int64_t K, int64_t n0) {
    const int64_t G = K / 32, B = K / 2;
    float acc[MB][R] = {}, zacc[MB][R] = {};
    for (int64_t g = 0; g < G; g++) {
        for (int r = 0; r < R; r++) {
            const uint8_t* b = codes + (n0 + r) * B + g * 16;
            float q[32];
            for (int j = 0; j < 16; j++) { q[j] = float(b[j] & 15); q[16 + j] = float(b[j] >> 4); }
            const float s = scales[(n0 + r) * G + g], z = zeros[(n0 + r) * G + g];
            for (int m = 0; m < MB; m++) {
                const float* xg = x + m * K + g * 32;
                float dot = 0;
                for (int j = 0; j < 32; j++) dot += q[j] * xg[j];
                acc[m][r] += dot * s;
                zacc[m][r] += z * xsum[m * G + g];
            }
        }
    }
    for (int m = 0; m < MB; m++)
        for (int r = 0; r < R; r++) y[m * N + n0 + r] = acc[m][r] + zacc[m][r];
}

__attribute__((target("avx2,fma"))) inline float hsum_avx2(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// sum_g zero[g] * xsum[g] for one output row: after the main loop, 8 groups at a time (the
// same order for every number of x rows)
__attribute__((target("avx2,fma"))) inline float zero_term_avx2(const float* z, const float* xs, int64_t G) {
    __m256 v = _mm256_setzero_ps();
    int64_t g = 0;
    for (; g + 8 <= G; g += 8) v = _mm256_fmadd_ps(_mm256_loadu_ps(z + g), _mm256_loadu_ps(xs + g), v);
    float t = hsum_avx2(v);
    for (; g < G; g++) t += z[g] * xs[g];
    return t;
}

template <int MB>
__attribute__((target("avx2,fma")))
void tile_avx2(const float* x, const uint8_t* codes, const float* scales, const float* zeros,
               const float* xsum, float* y, int64_t N, int64_t K, int64_t n0) {
    const int64_t G = K / 32, B = K / 2;
    __m256 acc[MB][R];
    for (int m = 0; m < MB; m++)
        for (int r = 0; r < R; r++) acc[m][r] = _mm256_setzero_ps();
    const __m256i low4 = _mm256_set1_epi32(15);
    for (int64_t g = 0; g < G; g++) {
        for (int r = 0; r < R; r++) {
            const uint8_t* b = codes + (n0 + r) * B + g * 16;
            const __m256i b0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)b));
            const __m256i b1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)(b + 8)));
            const __m256 q0 = _mm256_cvtepi32_ps(_mm256_and_si256(b0, low4));  // codes 0..7
            const __m256 q1 = _mm256_cvtepi32_ps(_mm256_and_si256(b1, low4));  // codes 8..15
            const __m256 q2 = _mm256_cvtepi32_ps(_mm256_srli_epi32(b0, 4));    // codes 16..23
            const __m256 q3 = _mm256_cvtepi32_ps(_mm256_srli_epi32(b1, 4));    // codes 24..31
            const __m256 s = _mm256_set1_ps(scales[(n0 + r) * G + g]);
            for (int m = 0; m < MB; m++) {
                const float* xg = x + m * K + g * 32;
                __m256 lo = _mm256_mul_ps(q0, _mm256_loadu_ps(xg));
                __m256 hi = _mm256_mul_ps(q2, _mm256_loadu_ps(xg + 16));
                lo = _mm256_fmadd_ps(q1, _mm256_loadu_ps(xg + 8), lo);
                hi = _mm256_fmadd_ps(q3, _mm256_loadu_ps(xg + 24), hi);
                acc[m][r] = _mm256_fmadd_ps(_mm256_add_ps(lo, hi), s, acc[m][r]);
            }
        }
    }
    for (int m = 0; m < MB; m++)
        for (int r = 0; r < R; r++)
            y[m * N + n0 + r] = hsum_avx2(acc[m][r]) + zero_term_avx2(zeros + (n0 + r) * G, xsum + m * G, G);
}

template <int MB>
__attribute__((target("avx512f,avx512bw,avx2,fma")))
void tile_avx512(const float* x, const uint8_t* codes, const float* scales, const float* zeros,
                 const float* xsum, float* y, int64_t N, int64_t K, int64_t n0) {
    const int64_t G = K / 32, B = K / 2;
    __m512 acc[MB][R];
    for (int m = 0; m < MB; m++)
        for (int r = 0; r < R; r++) acc[m][r] = _mm512_setzero_ps();
    const __m512i low4 = _mm512_set1_epi32(15);
    for (int64_t g = 0; g < G; g++) {
        for (int r = 0; r < R; r++) {
            const uint8_t* b = codes + (n0 + r) * B + g * 16;
            const __m512i w = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)b));
            const __m512 qlo = _mm512_cvtepi32_ps(_mm512_and_si512(w, low4));  // codes 0..15
            const __m512 qhi = _mm512_cvtepi32_ps(_mm512_srli_epi32(w, 4));    // codes 16..31
            const __m512 s = _mm512_set1_ps(scales[(n0 + r) * G + g]);
            for (int m = 0; m < MB; m++) {
                const float* xg = x + m * K + g * 32;
                const __m512 dot = _mm512_fmadd_ps(qhi, _mm512_loadu_ps(xg + 16),
                                                   _mm512_mul_ps(qlo, _mm512_loadu_ps(xg)));
                acc[m][r] = _mm512_fmadd_ps(dot, s, acc[m][r]);
            }
        }
    }
    for (int m = 0; m < MB; m++)
        for (int r = 0; r < R; r++)
            y[m * N + n0 + r] = _mm512_reduce_add_ps(acc[m][r]) + zero_term_avx2(zeros + (n0 + r) * G, xsum + m * G, G);
}

template <int MB>
void tile(int64_t path, const float* x, const uint8_t* codes, const float* scales, const float* zeros,
          const float* xsum, float* y, int64_t N, int64_t K, int64_t n0) {
    if (path == 2) tile_avx512<MB>(x, codes, scales, zeros, xsum, y, N, K, n0);
    else if (path == 1) tile_avx2<MB>(x, codes, scales, zeros, xsum, y, N, K, n0);
    else tile_plain<MB>(x, codes, scales, zeros, xsum, y, N, K, n0);
}

// x rows in blocks that keep their accumulators in registers: 4 x rows x 4 output rows (16
// vectors of 32 on AVX-512), 2 x 4 on AVX2 (8 of its 16); each block widens the codes once.
void tile_rows(int64_t path, const float* x, const uint8_t* codes, const float* scales, const float* zeros,
               const float* xsum, float* y, int64_t M, int64_t N, int64_t K, int64_t n0) {
    const int64_t G = K / 32, most = path == 2 ? 4 : 2;
    for (int64_t m0 = 0; m0 < M;) {
        const int64_t left = M - m0, mb = left >= most ? most : (left >= 2 ? 2 : 1);
        const float* xm = x + m0 * K;
        const float* sm = xsum + m0 * G;
        float* ym = y + m0 * N;
        if (mb == 4) tile<4>(path, xm, codes, scales, zeros, sm, ym, N, K, n0);
        else if (mb == 2) tile<2>(path, xm, codes, scales, zeros, sm, ym, N, K, n0);
        else tile<1>(path, xm, codes, scales, zeros, sm, ym, N, K, n0);
        m0 += mb;
    }
}
}  // namespace

// x [M, K] float32, codes [N, K/2], scales and zeros [N, K/32] float32 -> y [M, N].
// path: 0 plain, 1 AVX2+FMA, 2 AVX-512 (the caller checks that the CPU has it).
extern "C" void kernel(const float* x, const uint8_t* codes, const float* scales, const float* zeros,
                       float* y, const int64_t M, const int64_t N, const int64_t K, const int64_t path)
{
    const int64_t G = K / 32;
    std::vector<float> xsum(M * G);
    for (int64_t m = 0; m < M; m++)
        for (int64_t g = 0; g < G; g++) {
            float t = 0;
            for (int64_t j = 0; j < 32; j++) t += x[m * K + g * 32 + j];
            xsum[m * G + g] = t;
        }
    #pragma omp parallel for
    for (int64_t n0 = 0; n0 < N; n0 += R)
        tile_rows(path, x, codes, scales, zeros, xsum.data(), y, M, N, K, n0);
}
"""

_lock = threading.Lock()
_kernel = None
_failed = False
_path = "plain"


def compile_kernel():
    """Build the library (cached on disk by Inductor): every path, chosen per call."""
    from torch._inductor.codecache import CppPythonBindingsCodeCache

    return CppPythonBindingsCodeCache.load_pybinding(
        ["const float*", "const uint8_t*", "const float*", "const float*", "float*",
         "const int64_t", "const int64_t", "const int64_t", "const int64_t"], _SOURCE)


def _build():
    """The library for this process, built on first use (a few seconds the first time)."""
    global _kernel, _failed, _path
    with _lock:
        if _kernel is None and not _failed:
            wanted = cpu_features.chosen_path()
            try:
                _kernel = compile_kernel()
                _path = wanted
                supported = cpu_features.supported_paths()
                if _path == "plain":
                    log.warning("4-bit CPU kernel: plain C++ path, several times slower than the AVX2 one "
                                "(CPU: %s; AVX2 and FMA %s)", cpu_features.cpu_model(),
                                "capped by " + cpu_features.OVERRIDE_ENV if "avx2" in supported else "missing")
                else:
                    log.info("4-bit CPU kernel: %s path (CPU: %s; supports %s)", _path, cpu_features.cpu_model(),
                             ", ".join(supported))
            except Exception as exc:  # noqa: BLE001 - no compiler, or the internal API moved
                _failed = True
                log.warning("4-bit CPU kernel unavailable (%s); using the slower PyTorch expression "
                            "for 4-bit weights", exc)
    return _kernel


def available() -> bool:
    return _build() is not None


def kernel_path() -> str | None:
    """The path the kernel runs on this CPU ("avx512", "avx2", "plain"), or None without a build."""
    return _path if available() else None


def supports(out_features: int, in_features: int, group_size: int) -> bool:
    return group_size == GROUP and out_features % ROWS == 0 and in_features % GROUP == 0


def run(x: torch.Tensor, codes: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor,
        path: str | None = None) -> torch.Tensor:
    """x [M, K] float32 -> [M, N] on `path` (default: this CPU's); the tests name each path the
    CPU supports."""
    chosen = path or _path
    if chosen not in cpu_features.supported_paths():
        raise ValueError(f"this CPU cannot run the {chosen} path ({cpu_features.supported_paths()})")
    x = x.contiguous()
    m, n, k = x.shape[0], codes.shape[0], codes.shape[1] * 2
    y = torch.empty(m, n, dtype=torch.float32)
    _build()(x, codes, scales, zeros, y, m, n, k, PATH_IDS[chosen])
    return y


def _grid_int4_mm(x: torch.Tensor, codes: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor) -> torch.Tensor:
    """x [M, K] float32, codes [N, K/2] packed (`quantize.grid_int4._pack_nibbles`), scales and zeros
    [N, K/32] float32 -> [M, N], on this CPU's path."""
    x = x.contiguous()
    m, n = x.shape[0], codes.shape[0]
    y = torch.empty(m, n, dtype=torch.float32)
    _kernel(x, codes, scales, zeros, y, m, n, codes.shape[1] * 2, PATH_IDS[_path])
    return y


# A plain operator with a CPU kernel rather than `torch.library.custom_op`: a decode step calls
# it 120 times, and custom_op's Python layers cost about 7 us a call more (a millisecond a token).
_library = torch.library.Library("quill", "FRAGMENT")
_library.define("grid_int4_mm(Tensor x, Tensor codes, Tensor scales, Tensor zeros) -> Tensor")
_library.impl("grid_int4_mm", _grid_int4_mm, "CPU")


@torch.library.register_fake("quill::grid_int4_mm")
def _(x, codes, scales, zeros):
    return x.new_empty(x.shape[0], codes.shape[0])
