"""Shammah's benchmarks, run from a checkout as `python -m benchmarks` (not shipped in the wheel).

Every figure is a ratio against a reference measured in the same run; `core` has the measures of
start, decode and first token, `bootstrap` a start while the model downloads and `/model select`,
`learning` LoRA training and adapter swaps, `chat_training` turns answered while training runs.
"""
