"""Shammah: a local-first AI coding assistant for Jupyter.

Importing this package loads no MLX, opens no network and touches no model, so the kernel answers
``kernel_info`` at once; the engine imports its heavy parts on the model-worker thread.
"""

from __future__ import annotations

__version__ = "0.1.0"
