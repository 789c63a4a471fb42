"""Adapter folders: the mlx-lm LoRA format plus Shammah's metadata, and hot-swapping them.

A folder holds ``adapters.safetensors`` and ``adapter_config.json`` as ``mlx_lm.lora`` writes
them (so ``mlx_lm.load(base, adapter_path=...)`` reads it) and ``shammah.json`` (base model,
examples, losses). Swapping keeps the loaded base: on SmolLM2 attaching LoRA layers and loading
an adapter takes ~30 ms (~10 ms when the layers are already there), a reload 0.7-2 s.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, cast

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten
from mlx_lm.tuner.lora import LoRALinear
from mlx_lm.tuner.utils import linear_to_lora_layers, remove_lora_layers

from .adapter_library import ADAPTER_FILE, CONFIG_FILE, METADATA_FILE, fsync_path
from .errors import ModelError

Modules = list[tuple[str, nn.Module]]


def apply_adapter(model: nn.Module, adapter_dir: Path, *, base_model: str) -> None:
    """Put the adapter in ``adapter_dir`` on ``model`` (loaded from ``base_model``), in place.

    LoRA layers already on the model with the adapter's layout only get new weights; otherwise
    they are replaced. A damaged adapter, or one trained on another base, raises ``ModelError``
    and leaves the model as it was.
    """
    num_layers, lora, weights = _read_adapter(adapter_dir, base_model)
    current = lora_modules(model)
    if _layout(model) != _wanted_layout(model, num_layers, lora) or not _fits(model, weights):
        remove_lora_layers(model)
        try:
            linear_to_lora_layers(model, num_layers, lora)
            if not _fits(model, weights):
                raise ValueError("its tensors do not match the model's layers")
        except (ValueError, KeyError, TypeError) as e:
            remove_lora_layers(model)
            install_modules(model, current)
            raise ModelError(f"The adapter at {adapter_dir} does not fit this model: {e}") from e
        model.train(model.training)  # new LoRA layers start in training mode (dropout on)
    model.load_weights(list(weights.items()), strict=False)
    mx.eval(model.parameters())


def remove_adapter(model: nn.Module) -> bool:
    """Take the LoRA layers off ``model``, which is then the base model bit for bit."""
    had_adapter = bool(lora_modules(model))
    remove_lora_layers(model)
    return had_adapter


def _read_adapter(
    adapter_dir: Path, base_model: str
) -> tuple[int, dict[str, Any], dict[str, mx.array]]:
    """(num_layers, lora_parameters, weights), all read and checked before the model is touched."""
    from .adapter_library import read_json_object  # regular files only, bounded: no FIFO hang

    try:
        config = read_json_object(adapter_dir / CONFIG_FILE)
        if config is None:
            raise ValueError(f"{CONFIG_FILE} is missing or not a JSON object")
        meta = read_json_object(adapter_dir / METADATA_FILE) or {}
        weights = cast("dict[str, mx.array]", mx.load(str(adapter_dir / ADAPTER_FILE)))
        mx.eval(list(weights.values()))  # mx.load is lazy: read every byte now
        num_layers, lora = int(config["num_layers"]), dict(config["lora_parameters"])
        if not weights:
            raise ValueError(f"{ADAPTER_FILE} holds no tensors")
    except Exception as e:  # json, mlx and a missing key raise many types
        raise ModelError(f"The adapter at {adapter_dir} is missing or damaged: {e}") from e
    trained_on = next(
        (
            value
            for value in (meta.get("base_model"), config.get("model"))
            if isinstance(value, str)
        ),
        "",
    )
    if not trained_on:
        raise ModelError(
            f"The adapter at {adapter_dir} does not say which model it was trained on."
        )
    if not _same_model(str(trained_on), base_model):
        raise ModelError(
            f"The adapter at {adapter_dir} was trained on {trained_on}, not on {base_model}."
        )
    if config.get("fine_tune_type", "lora") != "lora":
        raise ModelError(f"The adapter at {adapter_dir} is not a LoRA adapter.")
    return num_layers, lora, weights


def _same_model(a: str, b: str) -> bool:
    if a == b:
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()


def _fits(model: nn.Module, weights: dict[str, mx.array]) -> bool:
    """Whether ``weights`` are exactly the model's LoRA parameters, by name and shape."""
    parameters = cast("list[tuple[str, mx.array]]", tree_flatten(model.parameters()))
    lora = {name: v.shape for name, v in parameters if name.endswith((".lora_a", ".lora_b"))}
    return lora == {name: value.shape for name, value in weights.items()}


def _layout(model: nn.Module) -> set[tuple[int, str, int, float]]:
    """(block, path in the block, rank, scale) of every LoRA layer on the model."""
    return {
        (i, path, m.lora_a.shape[1], m.scale)
        for i, block in enumerate(model.layers)
        for path, m in block.named_modules()
        if isinstance(m, LoRALinear)
    }


def _wanted_layout(
    model: nn.Module, num_layers: int, lora: dict[str, Any]
) -> set[tuple[int, str, int, float]]:
    count = len(model.layers)
    blocks = range(max(0, count - num_layers), count)
    return {(i, key, lora["rank"], lora["scale"]) for i in blocks for key in lora.get("keys", ())}


def lora_modules(model: nn.Module) -> Modules:
    """The LoRA layers on ``model`` with their paths, as ``install_modules`` puts them back."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, LoRALinear)]


def install_modules(model: nn.Module, modules: Modules) -> None:
    if modules:
        model.update_modules(tree_unflatten(modules))


def _write_json(path: Path, content: dict[str, Any]) -> None:
    path.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")


def adapter_config(
    base_model: str, num_layers: int, lora: dict[str, Any], batch_size: int, iters: int
) -> dict[str, Any]:
    """``adapter_config.json`` as ``mlx_lm.lora`` writes it (the keys ``load_adapters`` reads)."""
    return {
        "model": base_model,
        "fine_tune_type": "lora",
        "num_layers": num_layers,
        "lora_parameters": lora,
        "batch_size": batch_size,
        "iters": iters,
    }


def publish_adapter(
    partial: Path, out_dir: Path, config: dict[str, Any], metadata: dict[str, Any]
) -> None:
    """Add the JSON files to ``partial`` (which holds the weights), sync, rename to ``out_dir``."""
    _write_json(partial / CONFIG_FILE, config)
    _write_json(partial / METADATA_FILE, metadata)
    for path in [*partial.iterdir(), partial]:  # complete files on disk before the rename
        fsync_path(path)
    os.rename(partial, out_dir)
    fsync_path(out_dir.parent)
