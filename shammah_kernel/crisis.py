"""Crisis detection: messages that should not be answered by a small local model."""

from __future__ import annotations

import re
from pathlib import Path

from .errors import ConfigError

# A short built-in list; `crisis_keywords_path` replaces it with the user's own.
DEFAULT_KEYWORDS = (
    "suicide",
    "suicidal",
    "kill myself",
    "end my life",
    "want to die",
    "self-harm",
    "hurt myself",
)

HELP_RESOURCES = (
    "It sounds like you may be going through something hard. You don't have to face it alone: "
    "please reach out to someone you trust, or to a crisis line. In the US, call or text **988** "
    "(Suicide & Crisis Lifeline); in the UK and Ireland, call Samaritans at **116 123**; "
    "elsewhere, find a free, confidential helpline at <https://findahelpline.com>. "
    "If you are in immediate danger, call your local emergency number."
)


class CrisisDetector:
    def __init__(self, keywords: tuple[str, ...] = DEFAULT_KEYWORDS) -> None:
        words = [k.strip() for k in keywords if k.strip()]
        escaped = (r"\s+".join(map(re.escape, k.split())) for k in words)
        self._pattern = re.compile(r"\b(" + "|".join(escaped) + r")\b", re.I) if words else None

    @classmethod
    def from_file(cls, path: str) -> CrisisDetector:
        """The detector for the `crisis_keywords_path` setting ("" = the built-in list)."""
        if not path:
            return cls()
        from .settings_file import decode_settings, read_settings_file  # regular files only

        try:
            lines = decode_settings(read_settings_file(Path(path).expanduser())).splitlines()
        except (OSError, RuntimeError, ConfigError) as e:  # RuntimeError: `~nosuchuser`
            raise ConfigError(f"crisis_keywords_path: cannot read {path}: {e}") from e
        return cls(tuple(line for line in lines if not line.lstrip().startswith("#")))

    def matches(self, text: str) -> bool:
        return bool(self._pattern and self._pattern.search(text))
