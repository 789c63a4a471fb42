"""A pytest plugin (`-p tests.openblas_preload`): re-execute with the system OpenBLAS preloaded.

Tests that run MLX in the pytest process (perplexity, oracles) are ~20x faster with it, as the
kernel is. `-p` plugins load before pytest captures output, so the re-executed run still prints.
"""

from shammah_kernel.blas import reexec_with_openblas

reexec_with_openblas()
