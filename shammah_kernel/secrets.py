"""Secrets kept out of tools: environments without secret variables, text without secret values.

Tools run with the variables named like secrets removed (``[tools] pass_env`` keeps named ones),
and every text a tool returns, an example stored or a conversation saved is scrubbed of the values
known to be secret: those of such variables in ``os.environ`` and those the app registers (the
config's ``api_key``).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Mapping

REMOVED = "[secret removed]"
MIN_SECRET_CHARS = 8  # shorter values are too common in ordinary text to scrub
# Variables that hold credentials, or hand out access (an ssh agent, AWS profiles and roles).
_SECRET_NAME = re.compile(
    r"(?:^|.*_)API_KEY$|(?:^|.*_)TOKEN$|(?:^|_)SECRET|(?:^|_)PASSWORD|^AWS_|^SSH_AUTH_SOCK$",
    re.IGNORECASE,
)
# Removed from environments but not secret as text (a socket path, a region, a profile name).
_ACCESS_ONLY = re.compile(r"^SSH_AUTH_SOCK$|^AWS_(?!ACCESS_KEY_ID$)", re.IGNORECASE)

# Variables that change what `bash -c LINE` runs beyond the line the gate read (a startup file,
# exported functions, options, `cd` search paths): never passed on, whatever pass_env says.
_SHELL_ALTERING = re.compile(
    r"^(?:BASH_ENV|ENV|SHELLOPTS|BASHOPTS|CDPATH|PROMPT_COMMAND|GLOBIGNORE|IFS)$|^BASH_FUNC_"
)

_registered: set[str] = set()
_lock = threading.Lock()


def is_secret_name(name: str) -> bool:
    return _SECRET_NAME.search(name) is not None


def tool_environment(environ: Mapping[str, str], pass_env: Iterable[str] = ()) -> dict[str, str]:
    """`environ` without the variables named like secrets, except those `pass_env` names, and
    without the variables that would change what a shell runs."""
    kept = {name.upper() for name in pass_env}
    return {
        name: value
        for name, value in environ.items()
        if (name.upper() in kept or not is_secret_name(name)) and not _SHELL_ALTERING.search(name)
    }


def register_secret(value: str) -> None:
    """Scrub `value` from tool output, stored examples and saved files from now on."""
    value = value.strip()
    if len(value) >= MIN_SECRET_CHARS:
        with _lock:
            _registered.add(value)


def known_secrets() -> tuple[str, ...]:
    """The values scrubbed now, longest first (so a key containing another goes whole)."""
    found = {
        value.strip()
        for name, value in os.environ.items()
        if is_secret_name(name) and not _ACCESS_ONLY.search(name)
    }
    with _lock:
        found |= _registered
    return tuple(sorted((v for v in found if len(v) >= MIN_SECRET_CHARS), key=len, reverse=True))


def scrub(text: str, secrets: tuple[str, ...] | None = None) -> str:
    """`text` with each known secret value replaced by ``[secret removed]``."""
    for secret in known_secrets() if secrets is None else secrets:
        if secret in text:
            text = text.replace(secret, REMOVED)
    return text


def scrub_fragments(text: str, secret: str, run: int = MIN_SECRET_CHARS) -> str:
    """`text` with every stretch of `run` or more characters of `secret` replaced by ``***``."""
    if len(secret) < run or not text:
        return text
    grams = {secret[i : i + run] for i in range(len(secret) - run + 1)}
    marked = [False] * len(text)
    for i in range(len(text) - run + 1):
        if text[i : i + run] in grams:
            marked[i : i + run] = [True] * run
    pieces: list[str] = []
    for i, char in enumerate(text):
        if not marked[i]:
            pieces.append(char)
        elif i == 0 or not marked[i - 1]:
            pieces.append("***")
    return "".join(pieces)


class StreamScrubber:
    """Scrubs text that arrives in pieces: a secret split across two pieces is still caught.

    Only an end of the text that could begin a secret waits for the next piece (or `finish`),
    so ordinary output streams at once.
    """

    def __init__(self, secrets: tuple[str, ...] | None = None) -> None:
        self.secrets = known_secrets() if secrets is None else secrets
        self._carry = ""

    def feed(self, text: str) -> str:
        """What of `text` (and what was held back) can be shown now, scrubbed."""
        if not self.secrets:
            return text
        clean = scrub(self._carry + text, self.secrets)
        cut = len(clean) - self._held(clean)
        self._carry = clean[cut:]
        return clean[:cut]

    def finish(self) -> str:
        rest, self._carry = self._carry, ""
        return scrub(rest, self.secrets)

    def _held(self, text: str) -> int:
        """The length of the longest end of `text` that is the start of a secret."""
        for length in range(min(len(text), max(map(len, self.secrets)) - 1), 0, -1):
            end = text[-length:]
            if any(secret.startswith(end) for secret in self.secrets):
                return length
        return 0
