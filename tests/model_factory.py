"""Build a tiny random-weight Qwen2 model folder that `mlx_lm.load` accepts, offline and in ~0.1 s.

The weights are random (seeded), so the model says nothing sensible, but it exercises the real
load / tokenize / chat-template / generate / LoRA paths of mlx-lm in milliseconds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

import mlx.core as mx
from mlx.utils import tree_flatten
from mlx_lm.models.qwen2 import Model, ModelArgs
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
from tokenizers.trainers import BpeTrainer

TINY_MODEL_NAME = "tiny-qwen2"

VOCAB_SIZE = 512
ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END)

# Qwen2's pre-tokenizer regex, as transformers' Qwen2Tokenizer rebuilds it: declaring the same
# pipeline in tokenizer.json keeps ids identical whichever tokenizer class loads the folder.
_PRETOKENIZE_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# With default init and tied embeddings the residual stream stays close to the input embedding, so
# greedy decoding just repeats the last prompt token; a larger gain on every projection varies it.
_PROJECTION_GAIN = 4.0
_QUIET_TOKEN_GAIN = 0.1

CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# Fixed training text: Python and English prose, so the merges cover code and chat alike.
_CORPUS = '''
def fibonacci(n: int) -> list[int]:
    """Return the first n Fibonacci numbers."""
    numbers = [0, 1]
    while len(numbers) < n:
        numbers.append(numbers[-1] + numbers[-2])
    return numbers[:n]


class Counter:
    def __init__(self, start: int = 0) -> None:
        self.value = start

    def increment(self, step: int = 1) -> int:
        self.value += step
        return self.value


import json
from pathlib import Path

for index, name in enumerate(["alpha", "beta", "gamma"]):
    print(f"{index}: {name}")

with open("data.json", "r", encoding="utf-8") as handle:
    data = json.load(handle)
    if data is None or not isinstance(data, dict):
        raise ValueError("expected a JSON object")

result = sum(x * x for x in range(10) if x % 2 == 0)
values = {key: value for key, value in zip("abc", [1, 2, 3])}
import numpy as np
array = np.arange(12).reshape(3, 4)
print(array.mean(axis=0), array.sum())
try:
    value = int(text)
except ValueError as error:
    print("not a number:", error)

The notebook runs one cell at a time, and each cell can print text, show a table or draw a plot.
You are a helpful coding assistant. Answer the question and show the code that solves the problem.
The user asked how to read a CSV file into a data frame and compute the average of a column.
Here is a short function that does it, with a test that checks the result on a small example.
When the model is not sure, it should say so and ask a question instead of guessing an answer.
Tests should be small, fast and deterministic; they run on every change before it is merged.
A tokenizer splits text into pieces, and the model predicts the next piece from the ones before it.
The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs.
Please explain this error and how to fix it: TypeError: 'NoneType' object is not iterable.
'''


def make_tiny_qwen(folder: Path, *, seed: int = 0) -> Path:
    """Write a tiny Qwen2 model folder (config, f32 weights, tokenizer) into `folder`; return it.

    The same `seed` gives byte-identical files. `mlx_lm.load(str(folder))` loads the result.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer()
    tokenizer.save(str(folder / "tokenizer.json"))
    # BpeTrainer gives the special tokens the first ids, in the order they are listed.
    eos_id = SPECIAL_TOKENS.index(IM_END)
    config = _model_config(vocab_size=tokenizer.get_vocab_size(), eos_token_id=eos_id)
    _write_json(folder / "config.json", config)
    _write_json(folder / "tokenizer_config.json", _tokenizer_config())
    quiet_ids = _unseen_token_ids(tokenizer)
    _write_weights(folder / "model.safetensors", config, quiet_ids=quiet_ids, seed=seed)
    return folder


def _train_tokenizer() -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[
            AddedToken(token, special=True, normalized=False) for token in SPECIAL_TOKENS
        ],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS.splitlines(keepends=True), trainer=trainer)
    return tokenizer


def _model_config(*, vocab_size: int, eos_token_id: int) -> dict[str, object]:
    return {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 128,
        "vocab_size": vocab_size,
        "rope_theta": 10000.0,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": True,
        "max_position_embeddings": 2048,
        "eos_token_id": eos_token_id,
        "torch_dtype": "float32",
    }


def _tokenizer_config() -> dict[str, object]:
    return {
        "tokenizer_class": "Qwen2Tokenizer",
        "bos_token": None,
        "eos_token": IM_END,
        "pad_token": ENDOFTEXT,
        "unk_token": None,
        "chat_template": CHAT_TEMPLATE,
        "model_max_length": 2048,
        "clean_up_tokenization_spaces": False,
        "split_special_tokens": False,
        "errors": "replace",
    }


def _unseen_token_ids(tokenizer: Tokenizer) -> list[int]:
    """Special tokens, and byte tokens the corpus never uses (control bytes, UTF-8 fragments)."""
    return [
        token_id
        for token_id in range(tokenizer.get_vocab_size())
        if token_id < len(SPECIAL_TOKENS) or tokenizer.decode([token_id]) not in _CORPUS
    ]


def _write_weights(
    path: Path, config: dict[str, object], *, quiet_ids: list[int], seed: int
) -> None:
    mx.random.seed(seed)
    model = Model(ModelArgs.from_dict(config))
    weights = {
        name: value * _PROJECTION_GAIN if name.endswith("proj.weight") else value
        for name, value in cast("list[tuple[str, mx.array]]", tree_flatten(model.parameters()))
    }
    # Tied embeddings: short rows give logits near zero, far below the best token, so greedy output
    # is printable and does not stop or open a turn (sampling rarely does); prompts encode any text.
    embed = weights["model.embed_tokens.weight"]
    row_gain = mx.ones((embed.shape[0], 1), dtype=embed.dtype)
    row_gain[mx.array(quiet_ids)] = _QUIET_TOKEN_GAIN
    weights["model.embed_tokens.weight"] = embed * row_gain
    mx.save_safetensors(str(path), weights, metadata={"format": "mlx"})


def _write_json(path: Path, content: dict[str, object]) -> None:
    path.write_text(json.dumps(content, indent=2, sort_keys=True) + "\n", encoding="utf-8")
