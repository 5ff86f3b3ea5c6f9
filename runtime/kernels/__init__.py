"""Device kernels: the code that runs one operation fast on one kind of hardware.

Triton kernels for CUDA decode (`gemv`, `decode_attention`, `int8_matmul`, `fused_decode`), the
C++ 4-bit CPU kernel with the CPU feature detection that picks its path (`grid_int4_cpu`,
`cpu_features`) and DirectML's fused operators (`directml_ops`). Each module reports whether it
can run here; the reference model in `runtime/model.py` works without any of them.
"""
