"""Weight-only quantization of a loaded model by module replacement (see `grid_int4.py`)."""

from .grid_int4 import (  # noqa: F401
    INT4_GROUP_SIZES,
    Float32Head,
    GridInt4Linear,
    Int4Linear,
    Int8Linear,
    RescoredHead,
    _group_qparams,
    _pack_nibbles,
    _untie_output,
    four_bit_grid,
    quantize,
    quantize_float32_int4,
    quantize_int4,
    quantize_int8,
    weight_bytes,
)
