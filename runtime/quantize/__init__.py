"""Weight-only quantization of a loaded model by module replacement (gpt-fast's `quantize.py`).

Batch-1 decode reads every weight once per token, so fewer bytes per weight is more tokens per
second. Each scheme swaps the model's `nn.Linear` modules for its own (`linears.py`):
`quantize_int8` for `Int8Linear` (`int8.py`), `quantize_int4` for `Int4Linear` (`int4.py`,
PyTorch's tinygemm layout), optionally with a float32 or rescored output head (`heads.py`). The
embedding table stays in floating point: a token reads one row of it, not the whole table.
`quantize_float32_int4` (`float32_int4.py`) is different in kind: it keeps float32 activations
and stores weights that are 4-bit already (a Q4_0/Q4_1 GGUF) as their codes (`GridInt4Linear`,
`grid_int4.py`), exactly, so the model answers as in float32 from a quarter of the bytes (the CPU
default where it applies). `quantize(model, name)` (`schemes.py`) picks a scheme by name;
`weight_bytes` (`footprint.py`) measures what a decode step reads.

Quantization happens on the device the weights already live on and never changes the
activation dtype, so the rest of the model runs unchanged.
"""

from .float32_int4 import quantize_float32_int4
from .footprint import weight_bytes
from .grid_int4 import GridInt4Linear, four_bit_grid
from .heads import Float32Head, RescoredHead
from .int4 import INT4_GROUP_SIZES, Int4Linear, quantize_int4
from .int8 import Int8Linear, quantize_int8
from .schemes import quantize

__all__ = [
    "INT4_GROUP_SIZES",
    "Float32Head",
    "GridInt4Linear",
    "Int4Linear",
    "Int8Linear",
    "RescoredHead",
    "four_bit_grid",
    "quantize",
    "quantize_float32_int4",
    "quantize_int4",
    "quantize_int8",
    "weight_bytes",
]
