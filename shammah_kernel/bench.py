"""`python -m shammah_kernel bench`: kernel start, decode speed and time to first token.

Each figure is a ratio against a reference measured in the same run (a plain ipykernel, mlx-lm
called directly, the conversation's first turn), so a slow or busy machine moves both sides.
The kernels run under a temporary Shammah home and temporary Jupyter dirs; only the embedded
model's converted folder comes from the real Shammah home, as the cache it is meant to be.
The bootstrap measures (a start while the model downloads, `/model select`) are in
`bench_bootstrap`, which builds on this module's kernel driver; the learning measures (LoRA
training against `mlx_lm.lora`, applying an adapter against a reload) are in `bench_learning`.
"""

from __future__ import annotations

import json
import os
import queue
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager

from .blas import openblas_loaded, preload_environment
from .errors import BenchError, ShammahError
from .model_choice import MODEL_VARIABLE
from .session import DEFAULT_SYSTEM_PROMPT

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
_DIRECT_CODE = "from shammah_kernel.bench import direct_decode_main as main; main()"


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
    # Imported here: bench_bootstrap and bench_learning import this module.
    from .bench_bootstrap import measure_download_start, measure_model_select
    from .bench_chat_training import measure_chat_during_training
    from .bench_learning import measure_learning

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
    except ShammahError as e:
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
        from .config import models_dir
        from .embedded import ensure_embedded_model

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

        from .kernelspec import install as install_shammah

        install_shammah(user=True)
        install_python3(user=True)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@dataclass(frozen=True, slots=True)
class BenchKernel:
    """A kernel the bench started: its manager, a client with channels open, its stderr."""

    manager: KernelManager
    client: BlockingKernelClient
    log: IO[str]  # the kernel's stderr, shown if it dies

    def receive(self, get: Callable[..., Any], timeout: float = 1.0) -> dict[str, Any] | None:
        """The next message `get` (a channel's get_*_msg) returns, or None after `timeout` s."""
        try:
            return dict(get(timeout=timeout))
        except queue.Empty:
            if self.manager.is_alive():
                return None
        self.log.seek(0)
        raise BenchError(f"the {self.manager.kernel_name} kernel died:\n{self.log.read()[-2000:]}")


@contextmanager
def running_kernel(name: str, env: Mapping[str, str] | None = None) -> Iterator[BenchKernel]:
    """A kernel that has answered kernel_info; killed on exit. `env` replaces os.environ."""
    with tempfile.TemporaryFile("w+") as log:
        manager = KernelManager(kernel_name=name)
        environment = {} if env is None else {"env": dict(env)}
        manager.start_kernel(stdout=subprocess.DEVNULL, stderr=log, **environment)
        kernel = BenchKernel(manager, manager.blocking_client(), log)
        kernel.client.start_channels()
        try:
            _await_kernel_info(kernel)
            yield kernel
        finally:
            kernel.client.stop_channels()
            manager.shutdown_kernel(now=True)


def _await_kernel_info(kernel: BenchKernel) -> None:
    sent: set[str] = set()
    deadline = time.perf_counter() + TIMEOUT
    while time.perf_counter() < deadline:
        sent.add(kernel.client.kernel_info())  # resent each second, like wait_for_ready
        reply = kernel.receive(kernel.client.get_shell_msg)
        if reply is not None and reply["parent_header"].get("msg_id") in sent:
            return
    raise BenchError(f"the {kernel.manager.kernel_name} kernel did not start in {TIMEOUT:.0f} s")


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


def execute(kernel: BenchKernel, code: str) -> list[tuple[float, dict[str, Any]]]:
    """Run one cell; its iopub messages, each with the seconds since the request was sent."""
    content = {"code": code, "silent": False, "store_history": True, "allow_stdin": False}
    request = kernel.client.session.msg("execute_request", content)
    request["metadata"]["cellId"] = uuid.uuid4().hex  # as a notebook sends it: Markdown updates
    start = time.perf_counter()
    kernel.client.shell_channel.send(request)
    received: list[tuple[float, dict[str, Any]]] = []
    while time.perf_counter() - start < TIMEOUT:
        message = kernel.receive(kernel.client.get_iopub_msg)
        elapsed = time.perf_counter() - start
        if message is None or message["parent_header"].get("msg_id") != request["header"]["msg_id"]:
            continue
        if message["msg_type"] == "error":
            raise BenchError(f"the cell {code!r} failed: {message['content']['evalue']}")
        if message["msg_type"] == "status":
            if message["content"]["execution_state"] == "idle":
                return received
            continue
        received.append((elapsed, message))
    raise BenchError(f"the cell {code!r} did not finish in {TIMEOUT:.0f} s")


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
