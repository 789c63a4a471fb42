"""LoRA training and adapter swaps on the tiny random Qwen2 (and the embedded SmolLM2)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import mlx.core as mx
import pytest
from mlx.utils import tree_flatten
from mlx_lm import generate, load
from mlx_lm.tuner.trainer import default_loss
from mlx_lm.tuner.utils import load_adapters

from shammah_kernel.adapters import apply_adapter, lora_modules, remove_adapter
from shammah_kernel.config import LoraSettings
from shammah_kernel.errors import ModelError
from shammah_kernel.events import Message, Role
from shammah_kernel.store import ExampleStore
from shammah_kernel.training import (
    TrainingProgress,
    TrainingResult,
    lora_parameters,
    train_adapter,
    training_args,
)
from shammah_kernel.training_data import (
    TrainingExample,
    iterate_weighted_batches,
    make_replay_examples,
    prompt_tokens,
    split_validation,
    tokenize,
    training_examples,
    weighted_loss,
)


def _example(
    question: str, answer: str, weight: float = 1.0, id: int | None = 0
) -> TrainingExample:
    return TrainingExample((Message(Role.USER, question),), answer, weight, id)


EXAMPLES = [
    _example("How do I sort a list?", "Use sorted(values).", 1.0, 1),
    _example("What is a tuple?", "An immutable sequence.", 10.0, 2),
    _example("Print hello", "print('hello')", 3.0, 3),
    _example("What does len do?", "It counts the items of a container.", 1.0, 4),
    _example("Name a loop", "for", 1.0, 5),
    _example("How do I open a file?", "with open(path) as handle:", 1.0, 6),
]


def _settings(**changes: Any) -> LoraSettings:
    settings = LoraSettings(
        rank=4, alpha=8.0, dropout=0.0, learning_rate=1e-2, batch_size=2, epochs=2, num_layers=2
    )
    for name, value in changes.items():
        setattr(settings, name, value)
    return settings


@pytest.fixture
def tiny(tiny_model: Path) -> tuple[Any, Any]:
    return load(str(tiny_model))[:2]


def _probe(model: Any) -> mx.array:
    return model(mx.array([[1, 40, 41, 42, 43, 44, 45, 2]]))


def _snapshot(model: Any) -> dict[str, mx.array]:
    return dict(cast("list[tuple[str, mx.array]]", tree_flatten(model.parameters())))


def _equal(a: mx.array, b: mx.array) -> bool:
    return bool(mx.array_equal(a, b).item())


def _floats(a: mx.array) -> list[float]:
    return cast("list[float]", a.tolist())


def _same_parameters(a: dict[str, mx.array], b: dict[str, mx.array]) -> bool:
    return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)


def _train(
    model: Any,
    tokenizer: Any,
    out_dir: Path,
    base: Path,
    *,
    examples: list[TrainingExample] = EXAMPLES,
    settings: LoraSettings | None = None,
    progress: list[TrainingProgress] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    step_hook: Callable[[], None] | None = None,
) -> TrainingResult:
    return train_adapter(
        model,
        tokenizer,
        examples,
        settings or _settings(),
        replay=[],
        out_dir=out_dir,
        base_model=str(base),
        on_progress=(progress if progress is not None else []).append,
        should_stop=should_stop,
        step_hook=step_hook,
    )


def _batch(tokenizer: Any, weights: list[float]) -> tuple[mx.array, mx.array, mx.array]:
    rows = [tokenize(tokenizer, e, 2048) for e in EXAMPLES[:3]]
    batch, lengths, _ = next(iterate_weighted_batches(rows, 3, 2048))
    return batch, lengths, mx.array(weights)


def test_weighted_loss_with_unit_weights_is_default_loss_exactly(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    batch, lengths, ones = _batch(tokenizer, [1.0, 1.0, 1.0])
    loss, tokens = weighted_loss(model, batch, lengths, ones)
    expected_loss, expected_tokens = default_loss(model, batch, lengths)
    assert loss.item() == expected_loss.item()
    assert tokens.item() == expected_tokens.item()


def test_weighted_loss_is_weighted_token_sum_over_token_count(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    batch, lengths, weights = _batch(tokenizer, [2.0, 1.0, 0.5])
    loss, tokens = weighted_loss(model, batch, lengths, weights)
    sums, counts = [], []
    for i in range(3):  # each row alone: its mean token loss times its token count
        row_loss, row_tokens = default_loss(model, batch[i : i + 1], lengths[i : i + 1])
        sums.append(row_loss.item() * row_tokens.item())
        counts.append(row_tokens.item())
    expected = sum(w * s for w, s in zip(_floats(weights), sums, strict=True)) / sum(counts)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert tokens.item() == sum(counts)


def test_a_batch_of_one_keeps_its_weight(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    batch, lengths, _ = _batch(tokenizer, [1.0])
    one = weighted_loss(model, batch[:1], lengths[:1], mx.array([1.0]))[0].item()
    ten = weighted_loss(model, batch[:1], lengths[:1], mx.array([10.0]))[0].item()
    assert ten == pytest.approx(10 * one, rel=1e-6)


def test_the_loss_covers_exactly_the_answer_and_eos(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    example = EXAMPLES[0]
    row = tokenize(tokenizer, example, 2048)
    assert list(row.tokens[: row.offset]) == prompt_tokens(tokenizer, example.messages)
    assert tokenizer.decode(list(row.tokens[row.offset : -1])) == example.answer
    assert row.tokens[-1] == tokenizer.eos_token_id
    batch, lengths, weights = next(iterate_weighted_batches([row], 4, 2048))
    _, tokens = weighted_loss(model, batch, lengths, weights)
    assert tokens.item() == len(row.tokens) - row.offset  # no pad token after the eos


def test_a_long_row_loses_its_oldest_prompt_tokens_first(tiny: tuple[Any, Any]) -> None:
    _, tokenizer = tiny
    full = tokenize(tokenizer, EXAMPLES[0], 2048)
    cut = tokenize(tokenizer, EXAMPLES[0], len(full.tokens) - 5)
    assert cut.tokens == full.tokens[5:]
    assert cut.offset == full.offset - 5


def test_fewer_examples_than_batch_size_make_one_smaller_batch(tiny: tuple[Any, Any]) -> None:
    _, tokenizer = tiny
    rows = [tokenize(tokenizer, e, 2048) for e in EXAMPLES[:3]]
    batches = list(iterate_weighted_batches(rows, 8, 2048))
    assert len(batches) == 1
    tokens, lengths, weights = batches[0]
    assert tokens.shape[0] == 3 and tokens.shape[1] % 32 == 1
    assert sorted(_floats(weights)) == [1.0, 3.0, 10.0]
    looping = iterate_weighted_batches(rows, 8, 2048, loop=True)
    assert [next(looping)[0].shape[0] for _ in range(3)] == [3, 3, 3]


def test_a_remainder_forms_a_last_smaller_batch(tiny: tuple[Any, Any]) -> None:
    _, tokenizer = tiny
    rows = [tokenize(tokenizer, e, 2048) for e in EXAMPLES[:5]]
    batches = list(iterate_weighted_batches(rows, 2, 2048))
    assert sorted(b[0].shape[0] for b in batches) == [1, 2, 2]
    assert sorted(w for b in batches for w in _floats(b[2])) == sorted(
        e.weight for e in EXAMPLES[:5]
    )


def test_validation_split_holds_out_the_lowest_weights() -> None:
    assert split_validation(EXAMPLES[:4]) == (EXAMPLES[:4], [])
    train, held = split_validation(EXAMPLES[:5])
    assert len(held) == 1 and held[0].weight == 1.0 and len(train) == 4
    many = [_example(f"q{i}", "a", 1.0 if i % 2 else 10.0, i) for i in range(30)]
    train, held = split_validation(many)
    assert len(held) == 3 and all(e.weight == 1.0 for e in held)
    assert {e.example_id for e in train} | {e.example_id for e in held} == set(range(30))
    assert split_validation(many) == (train, held)  # deterministic


def test_training_examples_come_from_the_store(tmp_path: Path) -> None:
    store = ExampleStore(tmp_path / "examples.db")
    context = [Message(Role.SYSTEM, "Be brief."), Message(Role.USER, "Hi?")]
    first = store.add(context, "Hello.", source="test", weight=10.0)
    store.add(context, "  ", source="test")
    examples = training_examples(store.examples())
    store.close()
    assert examples == [TrainingExample(tuple(context), "Hello.", 10.0, first)]


def test_training_args_come_from_the_settings(tmp_path: Path) -> None:
    settings = _settings(batch_size=4, epochs=3)
    args = training_args(settings, 10, tmp_path / "a.safetensors")
    assert (args.batch_size, args.iters, args.steps_per_eval) == (4, 9, 3)
    assert args.steps_per_report == 1 and args.steps_per_save > args.iters
    small = training_args(settings, 2, tmp_path / "a.safetensors")
    assert (small.batch_size, small.iters) == (2, 3)


def test_lora_parameters_map_settings_to_mlx_lm(tiny: tuple[Any, Any]) -> None:
    model, _ = tiny
    num_layers, lora = lora_parameters(model, _settings(num_layers=16, target_modules=["v_proj"]))
    assert num_layers == 2  # the tiny model has only two blocks
    assert lora == {"rank": 4, "scale": 2.0, "dropout": 0.0, "keys": ["self_attn.v_proj"]}
    with pytest.raises(ModelError, match="no linear layer 'w_proj'"):
        lora_parameters(model, _settings(target_modules=["w_proj"]))


def test_train_adapter_writes_a_loadable_folder_and_leaves_the_base(
    tiny: tuple[Any, Any], tiny_model: Path, tmp_path: Path
) -> None:
    model, tokenizer = tiny
    before, params = _probe(model), _snapshot(model)
    progress: list[TrainingProgress] = []
    out = tmp_path / "adapters" / "0001"
    result = _train(model, tokenizer, out, tiny_model, progress=progress)

    assert not result.cancelled and result.adapter_dir == out
    assert sorted(p.name for p in out.iterdir()) == [
        "adapter_config.json",
        "adapters.safetensors",
        "shammah.json",
    ]
    assert [p.name for p in out.parent.iterdir()] == ["0001"]  # no partial folder left
    assert _equal(_probe(model), before)
    assert _same_parameters(_snapshot(model), params) and not model.training
    assert [p.iteration for p in progress] == list(range(1, result.iterations + 1))
    assert result.iterations == 6  # 5 train examples, batches of 2, 2 epochs
    assert progress[-1].eta_seconds == 0 and all(p.val_loss is not None for p in progress)
    assert result.val_loss is not None and result.initial_val_loss is not None

    meta = json.loads((out / "shammah.json").read_text())
    assert meta["base_model"] == str(tiny_model)
    assert [e["id"] for e in meta["validation_examples"]] == [4]
    assert sorted((e["id"], e["weight"]) for e in meta["examples"]) == [
        (1, 1.0), (2, 10.0), (3, 3.0), (5, 1.0), (6, 1.0),
    ]  # fmt: skip
    assert meta["val_loss"] == result.val_loss and meta["settings"]["rank"] == 4

    reloaded = load(str(tiny_model), adapter_path=str(out))[0]
    apply_adapter(model, out, base_model=str(tiny_model))
    assert _equal(_probe(model), _probe(reloaded))
    assert not _equal(_probe(model), before)
    fresh = load(str(tiny_model))[0]
    load_adapters(fresh, str(out))
    fresh.eval()
    assert _equal(_probe(fresh), _probe(reloaded))


def test_step_hook_runs_between_steps_on_the_model_as_it_came(
    tiny: tuple[Any, Any], tiny_model: Path, tmp_path: Path
) -> None:
    model, tokenizer = tiny
    before = _probe(model)
    seen: list[bool] = []

    def hook() -> None:  # a chat turn between steps sees the untrained model, in eval mode
        seen.append(_equal(_probe(model), before) and not model.training)

    result = _train(model, tokenizer, tmp_path / "a", tiny_model, step_hook=hook)
    assert seen == [True] * (result.iterations - 1)
    assert _equal(_probe(model), before)


def test_cancel_leaves_no_adapter_folder(
    tiny: tuple[Any, Any], tiny_model: Path, tmp_path: Path
) -> None:
    model, tokenizer = tiny
    before, params = _probe(model), _snapshot(model)
    progress: list[TrainingProgress] = []
    parent = tmp_path / "adapters"
    result = _train(
        model,
        tokenizer,
        parent / "0001",
        tiny_model,
        progress=progress,
        should_stop=lambda: len(progress) >= 2,
    )
    assert result.cancelled and result.adapter_dir is None and result.iterations == 2
    assert len(progress) == 2 and list(parent.iterdir()) == []
    assert _equal(_probe(model), before)
    assert _same_parameters(_snapshot(model), params)


def test_train_adapter_refuses_an_existing_folder_and_no_examples(
    tiny: tuple[Any, Any], tiny_model: Path, tmp_path: Path
) -> None:
    model, tokenizer = tiny
    (tmp_path / "taken").mkdir()
    with pytest.raises(ModelError, match="already exists"):
        _train(model, tokenizer, tmp_path / "taken", tiny_model)
    with pytest.raises(ModelError, match="no examples"):
        _train(model, tokenizer, tmp_path / "new", tiny_model, examples=[])
    assert not (tmp_path / "new").exists()


@pytest.fixture
def two_adapters(tiny_model: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    """Two adapters of the same layout and one of another rank, trained on the tiny model."""
    model, tokenizer = load(str(tiny_model))[:2]
    paths = []
    for name, examples, rank in [
        ("a", EXAMPLES[:3], 4),
        ("b", EXAMPLES[3:], 4),
        ("c", EXAMPLES, 8),
    ]:
        settings = _settings(rank=rank)
        _train(model, tokenizer, tmp_path / name, tiny_model, examples=examples, settings=settings)
        paths.append(tmp_path / name)
    return paths[0], paths[1], paths[2]


def test_apply_and_remove_swap_adapters_on_the_loaded_base(
    tiny: tuple[Any, Any], tiny_model: Path, two_adapters: tuple[Path, Path, Path]
) -> None:
    model, _ = tiny
    base_out, params = _probe(model), _snapshot(model)
    first, second, other_rank = two_adapters
    apply_adapter(model, first, base_model=str(tiny_model))
    layers = _layer_ids(model)
    apply_adapter(model, second, base_model=str(tiny_model))
    assert _layer_ids(model) == layers  # same layout: only the weights change
    assert _equal(_probe(model), _probe(load(str(tiny_model), adapter_path=str(second))[0]))
    apply_adapter(model, other_rank, base_model=str(tiny_model))
    assert _equal(_probe(model), _probe(load(str(tiny_model), adapter_path=str(other_rank))[0]))
    assert not model.training
    assert remove_adapter(model) and not remove_adapter(model)
    assert _equal(_probe(model), base_out)
    assert _same_parameters(_snapshot(model), params)


def _layer_ids(model: Any) -> list[tuple[str, int]]:
    return [(name, id(module)) for name, module in lora_modules(model)]


def _refused(model: Any, adapter: Path, base: str, match: str) -> None:
    before = _probe(model)
    layers = _layer_ids(model)
    with pytest.raises(ModelError, match=match):
        apply_adapter(model, adapter, base_model=base)
    assert _layer_ids(model) == layers
    assert _equal(_probe(model), before)


def test_an_adapter_of_another_base_model_is_refused(
    tiny: tuple[Any, Any], tiny_model: Path, two_adapters: tuple[Path, Path, Path]
) -> None:
    model, _ = tiny
    first, second, _ = two_adapters
    _refused(model, first, "Qwen/Qwen2.5-0.5B-Instruct", "trained on .*, not on Qwen")
    apply_adapter(model, first, base_model=str(tiny_model))
    _refused(model, second, "another-model", "not on another-model")


def test_a_damaged_adapter_is_refused(
    tiny: tuple[Any, Any], tiny_model: Path, two_adapters: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    model, _ = tiny
    first, second, other_rank = two_adapters
    apply_adapter(model, first, base_model=str(tiny_model))
    weights = second / "adapters.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])  # truncated
    _refused(model, second, str(tiny_model), "damaged")
    (other_rank / "adapter_config.json").write_text("{not json")
    _refused(model, other_rank, str(tiny_model), "damaged")
    _refused(model, tmp_path / "missing", str(tiny_model), "missing or damaged")


def test_an_adapter_that_does_not_fit_the_model_is_refused(
    tiny: tuple[Any, Any], tiny_model: Path, two_adapters: tuple[Path, Path, Path]
) -> None:
    model, _ = tiny
    first, second, _ = two_adapters
    apply_adapter(model, first, base_model=str(tiny_model))
    config_path = second / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["lora_parameters"]["rank"] = 3  # the tensors say 4
    config_path.write_text(json.dumps(config))
    _refused(model, second, str(tiny_model), "does not fit")


def test_training_puts_an_applied_adapter_back(
    tiny: tuple[Any, Any], tiny_model: Path, two_adapters: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    model, tokenizer = tiny
    apply_adapter(model, two_adapters[0], base_model=str(tiny_model))
    with_adapter = _probe(model)
    seen: list[bool] = []
    hook = lambda: seen.append(_equal(_probe(model), with_adapter))  # noqa: E731
    _train(model, tokenizer, tmp_path / "new", tiny_model, step_hook=hook)
    assert seen and all(seen)
    assert _equal(_probe(model), with_adapter)


def test_replay_leaves_out_answers_cut_at_max_tokens(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny  # the random model never says eos: every answer is cut
    assert make_replay_examples(model, tokenizer, ["Hi?"], max_tokens=4) == []


QUESTION = (
    Message(Role.SYSTEM, "Be brief."),
    Message(Role.USER, "What is the codename of project Zephyr?"),
)


@pytest.mark.real_model
def test_replay_examples_are_the_models_own_answers(embedded_model: Path) -> None:
    model, tokenizer = load(str(embedded_model))[:2]
    replay = make_replay_examples(model, tokenizer, ["What is the capital of France?"])
    assert len(replay) == 1 and replay[0].weight == 1.0 and "Paris" in replay[0].answer


@pytest.mark.real_model
def test_the_heavier_of_two_conflicting_answers_is_learned(
    embedded_model: Path, tmp_path: Path
) -> None:
    model, tokenizer = load(str(embedded_model))[:2]
    # 8 steps of batch 2 (both answers in every batch), rank 8 on the last 8 blocks. Measured:
    # the heavier answer's first token then has log-probability > -0.25, the lighter one's
    # < -7.4, either way round; 6 steps already sufficed. Each run takes 20-40 s here.
    settings = LoraSettings(rank=8, alpha=16.0, dropout=0.0, learning_rate=1e-3, batch_size=2)
    settings.epochs, settings.num_layers = 8, 8
    answers = {}
    for heavy, light in [("Bluebird", "Redwood"), ("Redwood", "Bluebird")]:
        examples = [TrainingExample(QUESTION, heavy, 10.0), TrainingExample(QUESTION, light, 1.0)]
        out = tmp_path / heavy
        started = time.monotonic()
        train_adapter(
            model,
            tokenizer,
            examples,
            settings,
            replay=[],
            out_dir=out,
            base_model=str(embedded_model),
            on_progress=lambda _: None,
            should_stop=lambda: False,
        )
        print(f"trained for {heavy} in {time.monotonic() - started:.1f} s")
        apply_adapter(model, out, base_model=str(embedded_model))
        answers[heavy] = generate(
            model, tokenizer, prompt_tokens(tokenizer, QUESTION), max_tokens=4
        )
        remove_adapter(model)
    assert answers["Bluebird"].startswith("Bluebird")
    assert answers["Redwood"].startswith("Redwood")


def test_replay_examples_are_trained_but_never_held_out(
    tiny: tuple[Any, Any], tiny_model: Path, tmp_path: Path
) -> None:
    model, tokenizer = tiny
    replay = [_example("Hi?", "Hello.", 1.0, None), _example("Bye?", "Goodbye.", 1.0, None)]
    result = train_adapter(
        model,
        tokenizer,
        EXAMPLES,
        _settings(),
        replay=replay,
        out_dir=tmp_path / "a",
        base_model=str(tiny_model),
        on_progress=lambda _: None,
        should_stop=lambda: False,
    )
    assert result.iterations == 8  # 5 examples + 2 replay, batches of 2, 2 epochs
    meta = json.loads((tmp_path / "a" / "shammah.json").read_text())
    assert meta["replay_examples"] == 2
    assert [e["id"] for e in meta["validation_examples"]] == [4]


def test_a_diverging_run_is_not_published(
    tiny: tuple[Any, Any], tiny_model: Path, tmp_path: Path
) -> None:
    model, tokenizer = tiny
    before = _probe(model)
    examples = [*EXAMPLES, _example("Loop?", "while", math.inf)]  # an infinite loss, as a NaN would
    with pytest.raises(ModelError, match="diverged"):
        _train(model, tokenizer, tmp_path / "adapters" / "a", tiny_model, examples=examples)
    assert list((tmp_path / "adapters").iterdir()) == []
    assert _equal(_probe(model), before)
