"""The feedback card under an answer: a rating, a note and a better answer, saved as an example."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from ..feedback import Feedback, Rating

PLAIN_TEXT = (
    "Rate this answer: /critical, /medium or /good [note]; "
    "put a better answer on the lines after the command."
)


def parse_request(payload: object) -> tuple[str, dict[str, str]] | None:
    """The kind (`save` or `propose`) and form values of a front end's message; None if invalid.

    The message carries the form (rating, note, better_answer) because ipywidgets holds back a
    state sync while an earlier one is unanswered, but never a custom message: the two may swap.
    """
    if not isinstance(payload, dict) or payload.get("kind") not in ("save", "propose"):
        return None
    form = {name: payload.get(name, "") for name in ("rating", "note", "better_answer")}
    if not all(isinstance(value, str) for value in form.values()):
        return None
    return str(payload["kind"]), form


def check_form(rating: str, note: str, better_answer: str) -> Feedback:
    """The feedback a form stands for; ValueError says what is missing."""
    try:
        chosen = Rating(rating)
    except ValueError:
        raise ValueError("Choose a rating first: critical, medium or good.") from None
    better = better_answer.strip() if chosen is not Rating.GOOD else ""
    if chosen is not Rating.GOOD and not better:
        raise ValueError(
            f"A {chosen.value} rating needs the better answer to learn from: "
            "write it (or propose one) before saving."
        )
    return Feedback(chosen, note.strip(), better)


def _error_text(error: BaseException) -> str:
    return str(error) or type(error).__name__


class FeedbackWidget(anywidget.AnyWidget):
    """Rates one answer; `save(rating, note, better_answer)` stores it and says what it stored.

    A save may be repeated with another rating (the caller replaces the earlier example). A
    `propose(note)` callback, if given, writes a better answer on a background thread.
    """

    _esm = Path(__file__).with_name("feedback.js")
    _css = Path(__file__).with_name("feedback.css")

    rating = traitlets.Unicode("", help="'', 'critical', 'medium' or 'good', as chosen.").tag(
        sync=True
    )
    note = traitlets.Unicode("", help="The user's one-line note on the answer.").tag(sync=True)
    better_answer = traitlets.Unicode(
        "", help="The answer to learn instead (critical and medium); typed or proposed."
    ).tag(sync=True)
    weights = traitlets.Dict(
        help="Training weight per rating value, e.g. {'critical': 10.0}; shown on the buttons."
    ).tag(sync=True)
    proposer = traitlets.Unicode("", help="Who proposes: 'Claude', 'the local model'.").tag(
        sync=True
    )
    can_propose = traitlets.Bool(False, help="Whether a propose callback was given.").tag(sync=True)
    proposing = traitlets.Bool(False, help="True while a better answer is being written.").tag(
        sync=True
    )
    stored = traitlets.Unicode("", help="What the latest save stored; '' until one.").tag(sync=True)
    saved = traitlets.Dict(
        help="The form as last saved: {rating, note, better_answer}; {} until a save."
    ).tag(sync=True)
    buffer = traitlets.Unicode("", help="The training buffer's state, one line.").tag(sync=True)
    error = traitlets.Unicode(
        "", help="Why the last save or proposal failed; '' if it did not."
    ).tag(sync=True)

    def __init__(
        self,
        *,
        weights: Mapping[Rating, float],
        save: Callable[[Rating, str, str], str],
        propose: Callable[[str], str] | None = None,
        proposer: str = "",
        buffer: str = "",
    ) -> None:
        super().__init__(
            weights={Rating(r).value: float(w) for r, w in weights.items()},
            proposer=proposer,
            can_propose=propose is not None,
            buffer=buffer,
        )
        self._save = save
        self._propose = propose
        # Messages arrive on the comm thread, proposals and set_buffer on others; hold_sync keeps
        # its pending keys on the instance, so two threads must not interleave there.
        self._lock = threading.RLock()
        self.on_msg(self._on_message)

    def set_buffer(self, text: str) -> None:
        """Show the training buffer's state; any thread may call it."""
        with self._lock:
            self.buffer = text

    def _on_message(self, _widget: object, content: object, _buffers: object) -> None:
        request = parse_request(content)
        if request is None:
            return
        kind, form = request
        propose = self._propose
        with self._lock, self.hold_sync():
            self.rating = form["rating"]
            self.note = form["note"]
            self.better_answer = form["better_answer"]
            if self.proposing:  # a second click that crossed the first one's answer
                if kind == "save":
                    self.error = "A better answer is being proposed: save when it is done."
                return
            if kind == "propose":
                if propose is None:
                    self.error = "No model can propose a better answer here: write it instead."
                    return
                self.proposing = True
                self.error = ""
        if kind == "save":
            self._handle_save(form)
            return
        note = form["note"].strip()
        # A model writes the proposal: seconds at least, so never on the comm thread.
        threading.Thread(
            target=self._run_proposal, args=(propose, note), name="shammah-propose", daemon=True
        ).start()

    def _handle_save(self, form: dict[str, str]) -> None:
        try:
            feedback = check_form(form["rating"], form["note"], form["better_answer"])
            message = self._save(feedback.rating, feedback.note, feedback.better_answer)
        except Exception as error:  # a missing field, or the caller's store failed
            with self._lock:
                self.error = _error_text(error)
            return
        with self._lock, self.hold_sync():
            self.stored = message
            self.saved = dict(form)
            self.error = ""

    def _run_proposal(self, propose: Callable[[str], str], note: str) -> None:
        try:
            proposal = propose(note)
        except Exception as error:  # the thread's top: the card shows what went wrong
            with self._lock, self.hold_sync():
                self.proposing = False
                self.error = f"Could not propose a better answer: {_error_text(error)}"
            return
        with self._lock, self.hold_sync():
            self.better_answer = proposal.strip()
            self.proposing = False
            self.error = ""  # a save refused while it ran no longer applies

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]] | None:
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is not None:
            bundle[0]["text/plain"] = PLAIN_TEXT
        return bundle
