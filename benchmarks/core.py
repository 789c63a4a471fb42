"""`python -m benchmarks`: kernel start, decode speed and time to first token.

Each figure is a ratio against a reference measured in the same run (a plain ipykernel, mlx-lm
called directly, the conversation's first turn), so a slow or busy machine moves both sides.
The kernels run under a temporary Shammah home and temporary Jupyter dirs; only the embedded
model's converted folder comes from the real Shammah home, as the cache it is meant to be.
The bootstrap measures (a start while the model downloads, `/model select`) are in
`bootstrap`, on the repo's Hub look-alike (tests/hub_server.py); the learning measures (LoRA
training against `mlx_lm.lora`, applying an adapter against a reload) are in `learning`. Kernels
are driven by the tests' driver, tests/kernel_client.py: one copy of each for tests and benchmarks.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from shammah_kernel.blas import openblas_loaded, preload_environment
from shammah_kernel.errors import ShammahError
from shammah_kernel.model_choice import MODEL_VARIABLE
from shammah_kernel.session import DEFAULT_SYSTEM_PROMPT
from tests.kernel_client import KernelDied, KernelSession

STARTUP_RUNS = 5
DOWNLOAD_SECONDS = 6.0  # how long the local hub takes to serve the model, whatever its size
TIMEOUT = 600.0  # seconds for a kernel to start, or for one cell (model load included)
# Turn 1 is also the decode measure; the conversation then grows to 10 turns.
TURNS = """\
Write a Python function that reads a CSV file into a list of dicts. Explain each step.
Now add type hints.
Make it raise a clear error when the file is missing.
Add a docstring.
Write a pytest test for it.
Make it skip blank lines.
Let the caller choose the delimiter.
Return a generator instead of a list.
Log how many rows were read.
Show the final version in one code block.""".splitlines()
_FOOTER = re.compile(r"(\d+) tokens · ([\d.]+) tok/s")
_DIRECT_CODE = "from benchmarks.core import direct_decode_main as main; main()"
REPO_ROOT = Path(__file__).resolve().parent.parent  # holds benchmarks/ and tests/


class BenchError(Exception):
    """A measure could not be taken; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Comparison:
    """One measure: Shammah's figure, the reference's, and the goal for their ratio."""

    label: str
    unit: str
    shammah: float
    reference: float
    reference_name: str
    limit: float
    at_most: bool  # the ratio must be <= limit; otherwise >= limit
    details: Mapping[str, object]  # extra figures for the JSON and the notes

    @property
    def ratio(self) -> float:
        return self.shammah / self.reference if self.reference > 0 else float("inf")

    @property
    def goal(self) -> str:
        return f"{'<=' if self.at_most else '>='} {self.limit:g}"

    @property
    def met(self) -> bool:
        return self.ratio <= self.limit if self.at_most else self.ratio >= self.limit

    def to_json(self) -> dict[str, object]:
        figures = asdict(self)
        details = figures.pop("details")
        return {**figures, "ratio": self.ratio, "goal": self.goal, "met": self.met, **details}


@dataclass(frozen=True, slots=True)
class TurnTiming:
    """One Shammah cell seen from outside, in seconds since its execute_request was sent."""

    first_text: float
    finished: float  # when the footer arrived
    tokens: int  # as the footer reports them
    kernel_tokens_per_second: float  # as the footer reports it

    @property
    def tokens_per_second(self) -> float:
        # mlx-lm's convention: tokens over the time since the first token came out.
        return self.tokens / max(self.finished - self.first_text, 1e-9)


def run_bench(
    *,
    json_path: Path | None,
    model: str | None,
    tokens: int,
    startup_runs: int = STARTUP_RUNS,
    download_seconds: float = DOWNLOAD_SECONDS,
) -> int:
    """Measure, print the table, and write the figures to `json_path` when given.

    `download_seconds` paces the local hub's download of the model (the tests make it short).
    """
    # Imported here: bootstrap and learning import this module.
    from .bootstrap import measure_download_start, measure_model_select
    from .chat_training import measure_chat_during_training
    from .learning import measure_learning

    try:
        if tokens < 2:
            raise BenchError("--tokens must be at least 2 to time decoding")
        model_dir = _model_folder(model)
        with (
            tempfile.TemporaryDirectory(prefix="shammah-bench-") as tmp,
            _isolated_environment(Path(tmp), model_dir, tokens),
        ):
            measures = {
                "startup": measure_startup(startup_runs),
                **measure_turns(model_dir, tokens),
                **measure_download_start(
                    model_dir, Path(tmp), startup_runs, download_seconds=download_seconds
                ),
                "select": measure_model_select(model_dir, Path(tmp), startup_runs),
                **measure_learning(model_dir, Path(tmp) / "learning"),
                "chat_during_training": measure_chat_during_training(model_dir),
            }
    except (BenchError, ShammahError) as e:
        print(f"The benchmark failed: {e}", file=sys.stderr)
        return 1
    runs = f"{startup_runs} runs of each start and switch"
    download = f"a {download_seconds:g} s download"
    print(f"model {model_dir}, {tokens} tokens per reply, {runs}, {download}\n")
    print(format_table(measures))
    if json_path is not None:
        figures = {"model": str(model_dir), "tokens": tokens, "startup_runs": startup_runs}
        figures["measures"] = {name: c.to_json() for name, c in measures.items()}
        json_path.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


def _model_folder(model: str | None) -> Path:
    if model is None:
        # The embedded model's conversion is a cache the user keeps: reuse the real one.
        from shammah_kernel.config import models_dir
        from shammah_kernel.embedded import ensure_embedded_model

        return ensure_embedded_model(models_dir(), progress=print)
    folder = Path(model).expanduser().resolve()
    if not (folder / "config.json").is_file():
        raise BenchError(f"{folder} is not an mlx-lm model folder (it has no config.json)")
    return folder


@contextmanager
def _isolated_environment(root: Path, model_dir: Path, tokens: int) -> Iterator[None]:
    """Temporary Shammah home and Jupyter dirs, with both kernelspecs, for every kernel started."""
    home = root / "shammah-home"
    home.mkdir()
    settings = f"id = {json.dumps(str(model_dir))}\nmax_tokens = {tokens}\ntemperature = 0.0\n"
    # No automatic training: the bench's many turns would start a run that the later measures
    # (a /model select waits for it) would then time.
    lora = "[lora]\nauto_train = false\n"
    (home / "config.toml").write_text(f"[model]\n{settings}{lora}", encoding="utf-8")
    saved = dict(os.environ)
    os.environ.update(
        SHAMMAH_HOME=str(home),
        JUPYTER_CONFIG_DIR=str(root / "jupyter-config"),
        JUPYTER_DATA_DIR=str(root / "jupyter-data"),
        JUPYTER_PATH=str(root / "jupyter-data"),  # searched before any installed kernelspecs
        JUPYTER_RUNTIME_DIR=str(root / "jupyter-runtime"),
        IPYTHONDIR=str(root / "ipython"),
        JUPYTER_PLATFORM_DIRS="1",
        MLX_DISABLE_COMPILE="1",
        HF_HUB_OFFLINE="1",
    )
    # The configured model answers every turn: no Claude key, no SHAMMAH_MODEL overriding it.
    for name in ("ANTHROPIC_API_KEY", MODEL_VARIABLE):
        os.environ.pop(name, None)
    try:
        from ipykernel.kernelspec import install as install_python3

        from shammah_kernel.kernelspec import install as install_shammah

        install_shammah(user=True)
        install_python3(user=True)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextmanager
def running_kernel(name: str, env: Mapping[str, str] | None = None) -> Iterator[KernelSession]:
    """A kernel that has answered kernel_info; killed on exit. `env` replaces os.environ."""
    try:
        session = KernelSession.start(name, env=env, startup_timeout=TIMEOUT, capture_stderr=True)
    except RuntimeError as e:  # jupyter_client's "Kernel didn't respond in N seconds"
        raise BenchError(f"the {name} kernel did not start: {e}") from None
    try:
        yield session
    finally:
        session.stop()


def _time_kernel_start(name: str) -> float:
    start = time.perf_counter()
    with running_kernel(name):
        return time.perf_counter() - start


def measure_startup(runs: int) -> Comparison:
    """Median seconds from start_kernel to kernel_info_reply, Shammah against python3."""
    samples: dict[str, list[float]] = {"shammah": [], "python3": []}
    for name in samples:
        _time_kernel_start(name)  # untimed: fills the OS file cache and the IPython dir
    for run in range(runs):
        for name in ("shammah", "python3") if run % 2 == 0 else ("python3", "shammah"):
            samples[name].append(round(_time_kernel_start(name), 4))
    shammah, python3 = (statistics.median(samples[name]) for name in ("shammah", "python3"))
    details = {"shammah_samples": samples["shammah"], "reference_samples": samples["python3"]}
    label = "kernel start to kernel_info_reply"
    return Comparison(label, "s", shammah, python3, "python3 ipykernel", 1.2, True, details)


def measure_turns(model_dir: Path, tokens: int) -> dict[str, Comparison]:
    """Decode speed against mlx-lm, and time to first token at the last turn against turn 1."""
    reference = _direct_decode(model_dir, tokens)  # first, while no kernel competes for the CPU
    turns = _conversation()
    first, last = turns[0], turns[-1]
    details = {
        "shammah_tokens": first.tokens,
        "shammah_kernel_reported": first.kernel_tokens_per_second,
        "reference_tokens": reference["tokens"],
        "reference_openblas": reference["openblas"],
    }
    label, tps = "decode, cell wall clock vs mlx-lm", first.tokens_per_second
    reference_tps = reference["tokens_per_second"]
    decode = Comparison(label, "tok/s", tps, reference_tps, "mlx-lm", 0.95, False, details)
    label = f"time to first token, turn {len(turns)} vs turn 1"
    seconds = {"turn_seconds": [round(t.first_text, 4) for t in turns]}
    ttft = Comparison(label, "s", last.first_text, first.first_text, "turn 1", 1.3, True, seconds)
    return {"decode": decode, "ttft": ttft}


def _direct_decode(model_dir: Path, tokens: int) -> dict[str, Any]:
    return run_direct(_DIRECT_CODE, str(model_dir), str(tokens))


def run_direct(code: str, *args: str, name: str = "direct mlx-lm run") -> dict[str, Any]:
    """A run in a process of its own, with the BLAS the kernel preloads; `name` is for errors.

    `code` prints its figures as one JSON object on its last line.
    """
    env = preload_environment(dict(os.environ)) or dict(os.environ)
    # `code` imports benchmarks: the run finds it whatever its working folder.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    argv = [sys.executable, "-c", code, *args]
    try:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        raise BenchError(f"the {name} took over {TIMEOUT:.0f} s") from None
    if done.returncode != 0:
        raise BenchError(f"the {name} failed:\n{done.stderr[-2000:]}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def first_turn_prompt(tokenizer: Any) -> list[int]:
    """Turn 1 of a new conversation as the kernel sends it: system prompt, then TURNS[0]."""
    chat = [
        {"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
        {"role": "user", "content": TURNS[0]},
    ]
    prompt = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True)
    if not isinstance(prompt, list):  # transformers 5 may return a BatchEncoding
        prompt = list(prompt["input_ids"])
    return list(prompt)


def direct_decode_main() -> None:
    """Run by `_direct_decode`: mlx-lm's stream_generate, greedy, on turn 1's prompt."""
    from mlx_lm import load, stream_generate
    from mlx_lm.sample_utils import make_sampler

    model_dir, tokens = sys.argv[1], int(sys.argv[2])
    model, tokenizer = load(model_dir)[:2]
    prompt = first_turn_prompt(tokenizer)
    sampler = make_sampler(temp=0.0)
    deque(stream_generate(model, tokenizer, prompt, max_tokens=8, sampler=sampler))  # warm-up
    responses = stream_generate(model, tokenizer, prompt, max_tokens=tokens, sampler=sampler)
    (last,) = deque(responses, maxlen=1)  # its generation_tps covers the whole reply
    figures = {"tokens": last.generation_tokens, "tokens_per_second": last.generation_tps}
    print(json.dumps({**figures, "openblas": openblas_loaded()}))


def _conversation() -> list[TurnTiming]:
    """One Shammah kernel: a warm-up cell (loads the model), /reset, then the turns."""
    with running_kernel("shammah") as kernel:
        execute(kernel, "Say hello.")
        execute(kernel, "/reset")
        return [turn_timing(execute(kernel, text)) for text in TURNS]


def execute(kernel: KernelSession, code: str) -> list[tuple[float, dict[str, Any]]]:
    """Run one cell; its iopub messages, each with the seconds since the request was sent."""
    try:
        run = kernel.execute(code, timeout=TIMEOUT)  # a cell id, as a notebook sends it
    except TimeoutError:
        raise BenchError(f"the cell {code!r} did not finish in {TIMEOUT:.0f} s") from None
    except KernelDied as e:
        raise BenchError(str(e)) from None
    for error in run.of_type("error"):
        raise BenchError(f"the cell {code!r} failed: {error['content']['evalue']}")
    return run.timed()


def turn_timing(messages: list[tuple[float, dict[str, Any]]]) -> TurnTiming:
    # Reply text goes out as displays with a display_id (then updated); the footer has none.
    texts, footers = [], []
    for elapsed, message in messages:
        if message["msg_type"] not in ("display_data", "update_display_data"):
            continue
        if message["content"].get("transient", {}).get("display_id"):
            texts.append(elapsed)
        elif match := _FOOTER.search(message["content"]["data"].get("text/plain", "")):
            footers.append((elapsed, match))
    if not texts or not footers:
        raise BenchError("a turn ended without reply text or its footer")
    finished, match = footers[-1]
    return TurnTiming(texts[0], finished, int(match[1]), float(match[2]))


def format_table(measures: dict[str, Comparison]) -> str:
    """The figures as an aligned text table, one row per measure, then their details."""
    rows = [("measure", "Shammah", "reference", "ratio", "goal", "met")]
    for c in measures.values():
        label, reference = f"{c.label} ({c.unit})", f"{c.reference:.3f} ({c.reference_name})"
        ratio, met = f"{c.ratio:.2f}", "yes" if c.met else "NO"
        rows.append((label, f"{c.shammah:.3f}", reference, ratio, c.goal, met))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    notes = [f"{name}: {json.dumps(c.details)}" for name, c in measures.items() if c.details]
    return "\n".join([*lines, "", *notes])
