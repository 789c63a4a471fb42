"""The engine status card: what the model is doing (downloading, loading, ready, failed)."""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from ..events import EngineState, EngineStatus

_TROUBLE = (EngineState.FAILED, EngineState.OFFLINE)


def format_bytes(n: float) -> str:
    """Decimal units, as Hugging Face shows download sizes: `512 B`, `412.0 MB`, `1.6 GB`."""
    if n < 1000:
        return f"{max(n, 0):.0f} B"
    for unit in ("KB", "MB", "GB"):
        n /= 1000
        if n < 1000 or unit == "GB":
            break
    return f"{n:.1f} {unit}"


def format_duration(seconds: float) -> str:
    """`45s`, `1m38s`, `2h05m`: whole seconds, rounded up so a nearly done ETA never reads 0s."""
    total = max(math.ceil(seconds), 0)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _progress(status: EngineStatus) -> str:
    done, total = status.downloaded_bytes, status.total_bytes
    parts = [format_bytes(done)]
    if total > 0:
        parts[0] += f" / {format_bytes(total)} ({min(100 * done // total, 100)}%)"
    if status.bytes_per_second > 0:
        parts.append(f"{format_bytes(status.bytes_per_second)}/s")
    if status.eta_seconds is not None and status.eta_seconds >= 0:
        parts.append(f"ETA {format_duration(status.eta_seconds)}")
    return ", ".join(parts)


def status_text(status: EngineStatus) -> str:
    """The plain-text card, for terminals and front ends that cannot render widgets."""
    line = f"{status.model or 'Shammah'}: {status.state.value}"
    if status.state is EngineState.DOWNLOADING:
        line += f" {_progress(status)}"
    if status.detail:
        line += f" ({status.detail})"
    if status.hint and status.state in _TROUBLE:
        line += f"\n{status.hint}"
    return line


class StatusWidget(anywidget.AnyWidget):
    """A card with the engine's state; `show()` may be called from any thread."""

    _esm = Path(__file__).with_name("status.js")
    _css = Path(__file__).with_name("status.css")

    state = traitlets.Unicode(
        EngineState.INITIALIZING.value, help="One of the EngineState values."
    ).tag(sync=True)
    model = traitlets.Unicode("", help="The model's name, as the user chose it.").tag(sync=True)
    detail = traitlets.Unicode("", help="The current step, or what went wrong.").tag(sync=True)
    hint = traitlets.Unicode("", help="What the user can do about a failure.").tag(sync=True)
    downloaded_bytes = traitlets.Int(0, help="Bytes downloaded so far.").tag(sync=True)
    total_bytes = traitlets.Int(0, help="Bytes to download in all; 0 = unknown.").tag(sync=True)
    bytes_per_second = traitlets.Float(0.0, help="Download rate in bytes/s.").tag(sync=True)
    eta_seconds = traitlets.Float(-1.0, help="Seconds left to download; -1 = unknown.").tag(
        sync=True
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # hold_sync keeps its pending keys on the instance: two threads must not interleave there.
        self._show_lock = threading.Lock()

    def show(self, status: EngineStatus) -> None:
        """Set every trait from `status`; the front end gets one update message."""
        eta = -1.0 if status.eta_seconds is None else float(status.eta_seconds)
        with self._show_lock, self.hold_sync():
            self.state = status.state.value
            self.model = status.model
            self.detail = status.detail
            self.hint = status.hint
            self.downloaded_bytes = status.downloaded_bytes
            self.total_bytes = status.total_bytes
            self.bytes_per_second = float(status.bytes_per_second)
            self.eta_seconds = eta

    @property
    def status(self) -> EngineStatus:
        """The snapshot the widget shows now."""
        return EngineStatus(
            state=EngineState(self.state),
            model=self.model,
            detail=self.detail,
            hint=self.hint,
            downloaded_bytes=self.downloaded_bytes,
            total_bytes=self.total_bytes,
            bytes_per_second=self.bytes_per_second,
            eta_seconds=None if self.eta_seconds < 0 else self.eta_seconds,
        )

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]] | None:
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is not None:
            bundle[0]["text/plain"] = status_text(self.status)
        return bundle
