"""Bench measures of the bootstrap: a kernel that answers while its model downloads, and a switch.

The download comes from the tests' Hub look-alike on 127.0.0.1 (tests/hub_server.py), serving the
bench's model folder as one repo, paced so that the whole download takes a set time.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shammah_kernel.blas import openblas_loaded
from shammah_kernel.model_choice import MODEL_VARIABLE
from tests.hub_server import HubServer, serve_hub
from tests.kernel_client import KernelSession

from .core import (
    TIMEOUT,
    TURNS,
    BenchError,
    Comparison,
    execute,
    first_turn_prompt,
    run_direct,
    running_kernel,
    turn_timing,
)

REPO = "bench/model"
SELECT_POLL = 0.05  # seconds between `/model status` polls while the switch loads
_ROW = re.compile(r"^\| (\w[\w ]*) \| (.*) \|$", re.MULTILINE)
# Settings of the bench's own shell that would keep a kernel from using the local hub.
_HUB_VARIABLES = ("HF_HUB_OFFLINE", "HF_TOKEN", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")
# The download measures: which figure of a start each compares, and its label.
_START_MEASURES = {
    "download_start": ("kernel_info", "kernel start to kernel_info_reply, model downloading"),
    "download_first_cell": ("first_cell", "kernel start to first cell answered, model downloading"),
}
_DIRECT_SELECT_CODE = "from benchmarks.bootstrap import direct_select_main as m; m()"


@contextmanager
def serve_model(folder: Path, *, seconds: float) -> Iterator[HubServer]:
    """Serve `folder` as `REPO` on a free port of 127.0.0.1, its download paced to `seconds`."""
    with serve_hub() as hub:
        hub.add_repo(REPO, folder)
        hub.pace(seconds)
        yield hub


def _hub_environment(hub: HubServer, hf_home: Path) -> dict[str, str]:
    """A kernel's environment: its model is `REPO`, fetched from `hub` into `hf_home`."""
    env = {k: v for k, v in os.environ.items() if k not in _HUB_VARIABLES}
    no_proxy = ",".join(p for p in (env.get("NO_PROXY", ""), "127.0.0.1") if p)
    return env | {
        "HF_ENDPOINT": hub.url,
        "HF_HOME": str(hf_home),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "NO_PROXY": no_proxy,
        MODEL_VARIABLE: REPO,
    }


def _model_status(kernel: KernelSession) -> dict[str, str]:
    """The rows of `/model status` (model, state, ...) as the kernel shows them now."""
    for _, message in execute(kernel, "/model status"):
        rows = dict(_ROW.findall(message["content"].get("data", {}).get("text/plain", "")))
        if "state" in rows:
            return rows
    raise BenchError("/model status showed no state")


def _wait_for_status(
    kernel: KernelSession, done: Callable[[dict[str, str]], bool], *, interval: float
) -> tuple[dict[str, str], int]:
    """Poll `/model status` until `done(rows)`; the last rows and the number of polls."""
    deadline, polls = time.perf_counter() + TIMEOUT, 0
    while time.perf_counter() < deadline:
        rows, polls = _model_status(kernel), polls + 1
        if done(rows):
            return rows, polls
        if rows["state"].startswith(("failed", "offline")):
            raise BenchError(f"the model {rows.get('model')} did not load: {rows['state']}")
        time.sleep(interval)
    raise BenchError(f"the model did not reach the awaited state in {TIMEOUT:.0f} s")


@dataclass(frozen=True, slots=True)
class _Start:
    kernel_info: float  # seconds from start_kernel to kernel_info_reply
    first_cell: float  # seconds from start_kernel to the first cell's end
    state: str  # the model's state once its worker had begun


def _time_start(
    hub: HubServer, hf_home: Path, *, downloading: bool, finish: bool = False
) -> _Start:
    """Start a kernel and run a first cell; with `finish`, then wait until the model is ready."""
    start = time.perf_counter()
    with running_kernel("shammah", _hub_environment(hub, hf_home)) as kernel:
        kernel_info = time.perf_counter() - start
        execute(kernel, "/status")
        first_cell = time.perf_counter() - start
        rows, _ = _wait_for_status(
            kernel, lambda r: not r["state"].startswith("init"), interval=0.1
        )
        if finish:
            _wait_for_status(kernel, lambda r: r["state"] == "ready", interval=0.25)
    if rows["state"].startswith("downloading") != downloading:
        expected = "downloading" if downloading else "not downloading (cached)"
        raise BenchError(f"after its first cell the model was {rows['state']!r}, not {expected}")
    return _Start(round(kernel_info, 4), round(first_cell, 4), rows["state"])


def measure_download_start(
    model_dir: Path, root: Path, runs: int, *, download_seconds: float
) -> dict[str, Comparison]:
    """Start to kernel_info_reply and to the first cell, model downloading vs already cached."""
    cached = root / "hf-cached"
    samples: dict[bool, list[_Start]] = {True: [], False: []}
    with serve_model(model_dir, seconds=download_seconds) as hub:
        # The first start's download is let finish: it fills the cache of the cached starts.
        samples[True].append(_time_start(hub, cached, downloading=True, finish=True))
        if hub.first_request is None or hub.last_byte is None:
            raise BenchError("the model did not come from the bench's local hub")
        download = hub.last_byte - hub.first_request
        samples[False].append(_time_start(hub, cached, downloading=False))
        for run in range(1, runs):
            for downloading in (False, True) if run % 2 else (True, False):
                home = root / f"hf-{run}" if downloading else cached
                samples[downloading].append(_time_start(hub, home, downloading=downloading))
                if downloading:
                    shutil.rmtree(home, ignore_errors=True)  # a partial download
    context = {
        "download_seconds": round(download, 3),
        "download_bytes": hub.total_bytes,
        "states_after_first_cell": [s.state for s in samples[True]],
    }
    # The download runs on the model worker's thread: if a start waited for it, these ratios
    # would grow by the download's seconds; a fifth over the cached start allows for its CPU use.
    comparisons = {}
    for key, (figure, label) in _START_MEASURES.items():
        shammah, reference = ([getattr(s, figure) for s in samples[d]] for d in (True, False))
        details = {"shammah_samples": shammah, "reference_samples": reference, **context}
        median, reference_median = statistics.median(shammah), statistics.median(reference)
        comparisons[key] = Comparison(
            label, "s", median, reference_median, "model cached", 1.2, True, details
        )
    return comparisons


@dataclass(frozen=True, slots=True)
class _Switch:
    seconds: float  # from sending `/model select` to the next turn's first reply text
    ready: float  # from sending `/model select` to `/model status` saying the new model is ready
    polls: int  # `/model status` cells run meanwhile


def measure_model_select(model_dir: Path, root: Path, runs: int) -> Comparison:
    """Seconds from `/model select` to the new model's first token, against mlx-lm directly.

    The new model is the same weights under another folder each time: the measure is the switch's
    path, not the model.
    """
    switches: list[_Switch] = []
    references: list[dict[str, Any]] = []
    with running_kernel("shammah") as kernel:
        _wait_for_status(kernel, lambda rows: rows["state"] == "ready", interval=0.1)
        for run in range(1, runs + 1):
            model = root / f"switch-{run}"
            model.symlink_to(model_dir, target_is_directory=True)
            # While the kernel idles: its model loaded, as model A is loaded in the reference.
            references.append(run_direct(_DIRECT_SELECT_CODE, str(model_dir), str(model)))
            switches.append(_time_switch(kernel, model))
            execute(kernel, "/reset")  # each switch answers the same first turn
    details = {
        "shammah_samples": [s.seconds for s in switches],
        "reference_samples": [r["seconds"] for r in references],
        "ready_seconds": [s.ready for s in switches],
        "status_polls": [s.polls for s in switches],
        "reference_load_seconds": [r["load_seconds"] for r in references],
        "reference_openblas": references[0]["openblas"],
    }
    # Switching is a load plus a first token: the kernel may add its cells' round trips and the
    # status polling (about one poll interval), which should stay under a fifth of that.
    label = "/model select to first token, cached model"
    shammah = statistics.median(s.seconds for s in switches)
    reference = statistics.median(r["seconds"] for r in references)
    name = "mlx-lm load + 1st token"
    return Comparison(label, "s", shammah, reference, name, 1.2, True, details)


def _time_switch(kernel: KernelSession, model: Path) -> _Switch:
    start = time.perf_counter()
    execute(kernel, f"/model select {shlex.quote(str(model))}")

    def switched(rows: dict[str, str]) -> bool:
        return rows["model"] == model.name and rows["state"] == "ready"

    _, polls = _wait_for_status(kernel, switched, interval=SELECT_POLL)
    ready = time.perf_counter() - start
    messages = execute(kernel, TURNS[0])
    if not _answered_by(messages, model.name):
        raise BenchError(f"the turn after /model select was not answered by {model.name}")
    return _Switch(round(ready + turn_timing(messages).first_text, 4), round(ready, 4), polls)


def _answered_by(messages: list[tuple[float, dict[str, Any]]], name: str) -> bool:
    """Whether the turn's footer names `name` (it reads `[name · N tokens · ...]`)."""
    return any(
        m["content"].get("data", {}).get("text/plain", "").startswith(f"[{name} ·")
        for _, m in messages
        if m["msg_type"] == "display_data"
    )


def direct_select_main() -> None:
    """Run by `measure_model_select`: with model A loaded, time loading B and its first token."""
    from mlx_lm import load, stream_generate
    from mlx_lm.sample_utils import make_sampler

    model_a, model_b = sys.argv[1], sys.argv[2]
    loaded = load(model_a)  # as in the kernel, where A was loaded before the switch
    del loaded  # the kernel's worker drops the old model before loading the new one
    start = time.perf_counter()
    model, tokenizer = load(model_b)[:2]
    load_seconds = time.perf_counter() - start
    sampler = make_sampler(temp=0.0)
    prompt = first_turn_prompt(tokenizer)
    next(iter(stream_generate(model, tokenizer, prompt, max_tokens=1, sampler=sampler)))
    seconds = time.perf_counter() - start
    figures = {"seconds": round(seconds, 4), "load_seconds": round(load_seconds, 4)}
    print(json.dumps({**figures, "openblas": openblas_loaded()}))
