"""Every user setting of Shammah, read from ``config.toml`` under the Shammah home."""

from __future__ import annotations

import difflib
import json
import operator
import os
import re
import textwrap
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from traitlets import Bool, HasTraits, Instance, List, TraitError, TraitType, Unicode, validate

from shammah_kernel.errors import ConfigError
from shammah_kernel.settings_file import (
    UnreadableFile,
    decode_settings,
    nesting_problem,
    read_settings_file,
)


def shammah_home() -> Path:
    """The Shammah home: ``$SHAMMAH_HOME`` when set, else ``~/.shammah``; never created here."""
    override = os.environ.get("SHAMMAH_HOME")
    return Path(override).expanduser() if override else Path.home() / ".shammah"


def config_path() -> Path:
    return shammah_home() / "config.toml"


def models_dir() -> Path:
    return shammah_home() / "models"


def sessions_dir() -> Path:
    return shammah_home() / "sessions"


def ensure_dir(path: Path) -> Path:
    """Create ``path`` (and its parents) when missing; return it."""
    path.mkdir(parents=True, exist_ok=True)
    return path


class ModelSize(StrEnum):
    BY_RAM = ""
    B0_5 = "0.5B"
    B1_5 = "1.5B"
    B3 = "3B"
    B7 = "7B"
    B14 = "14B"


class Device(StrEnum):
    AUTO = "auto"
    GPU = "gpu"
    CPU = "cpu"


class Route(StrEnum):
    AUTO = "auto"
    LOCAL = "local"
    CLAUDE = "claude"


_COMPARISONS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}


def _toml_value(value: object) -> str:
    """``value`` in TOML syntax, for the starter file and for problem messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):  # json strings are TOML basic strings, except for a raw DEL
        return json.dumps(str(value), ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return str(value)


N = TypeVar("N", int, float)


class _Number(TraitType[N, N]):
    """An int or float setting (the default's type) with range rules such as ``"> 0"``."""

    def __init__(self, default: N, *rules: str, help: str) -> None:
        super().__init__(default, help=help)
        self.kind: type[N] = type(default)
        self.rules = rules

    def validate(self, obj: Any, value: Any) -> N:
        kinds = (int,) if self.kind is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            wanted = "a whole number" if self.kind is int else "a number"
            raise TraitError(f"must be {wanted} (got {_toml_value(value)})")
        for rule in self.rules:
            op, limit = rule.split()
            if not _COMPARISONS[op](value, float(limit)):
                raise TraitError(f"must be {rule} (got {_toml_value(value)})")
        return self.kind(value)


E = TypeVar("E", bound=StrEnum)


class _Choice(TraitType[E, E | str]):
    """One member of a closed set, written in the file as its string value."""

    def __init__(self, default: E, *, help: str) -> None:
        super().__init__(default, help=help)
        self.choices = type(default)

    def validate(self, obj: Any, value: Any) -> E:
        try:
            return self.choices(value)
        except ValueError:
            allowed = ", ".join(_toml_value(choice) for choice in self.choices)
            raise TraitError(f"must be one of {allowed} (got {_toml_value(value)})") from None


class _Settings(HasTraits):
    """One table of settings; each subclass's help texts end with their default, kept in sync."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for _, trait in _ordered_traits(cls):
            if not _is_section(trait):
                trait.help = f"{trait.help} Default: {_toml_value(trait.default())}."


def _is_section(trait: TraitType[Any, Any]) -> bool:
    klass = trait.klass if isinstance(trait, Instance) else None
    return isinstance(klass, type) and issubclass(klass, _Settings)


def _ordered_traits(obj: HasTraits | type[HasTraits]) -> Iterator[tuple[str, TraitType[Any, Any]]]:
    """Traits in the order the class declares them (``traits()`` sorts by name)."""
    cls = obj if isinstance(obj, type) else type(obj)
    for name, member in vars(cls).items():
        if isinstance(member, TraitType):
            yield name, member


class ModelSettings(_Settings):
    """``[model]``: which local model answers, where it runs, and how it samples."""

    size = _Choice(ModelSize.BY_RAM, help='Local model size, 0.5B to 14B; "" picks by RAM.')
    id = Unicode("", help="A Hugging Face repo or local model folder; overrides size when set.")
    device = _Choice(Device.AUTO, help="Where the model runs: auto, gpu or cpu.")
    route = _Choice(Route.AUTO, help="auto (Claude until the local model loads), local or claude.")
    max_tokens = _Number(1024, ">= 1", help="Most tokens generated for one reply.")
    temperature = _Number(0.2, ">= 0", help="Sampling temperature; 0 is greedy.")
    top_p = _Number(1.0, "> 0", "<= 1", help="Nucleus sampling: probability mass kept.")
    repetition_penalty = _Number(1.0, "> 0", help="Penalty factor on repeated tokens; 1 is off.")
    context_length = _Number(8192, ">= 256", help="Most tokens of conversation the model sees.")
    system_prompt = Unicode("", help='System prompt of the local model; "" = the built-in one.')


class LoraSettings(_Settings):
    """``[lora]``: how feedback becomes weighted examples and LoRA adapters are trained on them."""

    rank = _Number(16, ">= 1", help="LoRA rank: inner width of each adapter's matrices.")
    alpha = _Number(32.0, "> 0", help="LoRA alpha; adapter updates are scaled by alpha / rank.")
    dropout = _Number(0.1, ">= 0", "< 1", help="Dropout probability on adapter inputs.")
    learning_rate = _Number(1e-4, "> 0", help="Optimizer learning rate of adapter training.")
    batch_size = _Number(4, ">= 1", help="Examples per training step.")
    epochs = _Number(3, ">= 1", help="Passes over the examples in one training run.")
    target_modules = List(Unicode(), ["q_proj", "v_proj"], help="Linear layers that get adapters.")
    num_layers = _Number(16, ">= 1", help="How many of the last transformer layers get adapters.")
    auto_train = Bool(True, help="Train in the background once enough new examples arrive.")
    auto_train_threshold = _Number(10, ">= 1", help="New examples that start automatic training.")
    high_weight = _Number(10.0, "> 0", help="Loss weight of /critical (high) feedback.")
    medium_weight = _Number(3.0, "> 0", help="Loss weight of /medium feedback.")
    normal_weight = _Number(1.0, "> 0", help="Loss weight of /good (normal) feedback.")
    collect_all_turns = Bool(True, help="Store every finished turn as a normal-weight example.")


class SamplingSettings(_Settings):
    """``[sampling]``: how often a local turn is also asked of Claude, to learn from."""

    claude_share = _Number(0.05, ">= 0", "<= 1", help="Share of local turns also sent to Claude.")


class ToolsSettings(_Settings):
    """``[tools]``: what the tools the model calls may see."""

    pass_env = List(
        Unicode(), [], help="Environment variables tools may see although they look secret."
    )


class ServerSettings(_Settings):
    """``[server]``: the HTTP service with Claude- and OpenAI-compatible endpoints."""

    bind_address = Unicode("127.0.0.1:8000", help="HOST:PORT the HTTP service listens on.")
    max_sessions = _Number(100, ">= 1", help="Most conversations the service keeps at once.")
    session_timeout_minutes = _Number(60, ">= 1", help="Idle minutes before a session ends.")
    auth_enabled = Bool(False, help="Require one of api_keys from every client.")
    api_keys = List(Unicode(), [], help="Keys clients may present when auth_enabled is true.")

    @validate("bind_address")
    def _check_bind_address(self, proposal: Any) -> str:
        value: str = proposal["value"]
        host, _, port = value.rpartition(":")
        if not host or not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
            raise TraitError(f"must be HOST:PORT, port 1-65535 (got {_toml_value(value)})")
        return value


class ShammahConfig(_Settings):
    """Every user setting; ``load_config`` fills it from ``config.toml``."""

    api_key = Unicode("", help="Anthropic API key; ANTHROPIC_API_KEY wins when set.")
    claude_model = Unicode("claude-sonnet-5-5", help="The Claude model that answers Claude turns.")
    streaming = Bool(True, help="Show replies token by token as they are generated.")
    crisis_keywords_path = Unicode(
        "", help='File of crisis keywords, one a line; "" = the built-in list.'
    )
    model = Instance(ModelSettings, args=(), help="[model]: local model, device, routing.")
    lora = Instance(LoraSettings, args=(), help="[lora]: feedback weights, adapter training.")
    sampling = Instance(SamplingSettings, args=(), help="[sampling]: turns also asked of Claude.")
    tools = Instance(ToolsSettings, args=(), help="[tools]: the tools' environment.")
    server = Instance(ServerSettings, args=(), help="[server]: the HTTP service.")

    def to_toml(self) -> str:
        """The current values as a TOML file, each setting under its help as a comment."""
        blocks = ["# Shammah settings. Delete a line to use its default.\n" + _render_table(self)]
        for name, trait in _ordered_traits(self):
            if _is_section(trait):
                blocks.append(f"[{name}]\n" + _render_table(getattr(self, name)))
        return "\n".join(blocks)


def _render_table(settings: HasTraits) -> str:
    lines: list[str] = []
    for name, trait in _ordered_traits(settings):
        if not _is_section(trait):
            lines += textwrap.wrap(trait.help, 98, initial_indent="# ", subsequent_indent="# ")
            lines.append(f"{name} = {_toml_value(getattr(settings, name))}")
    return "\n".join(lines) + "\n"


def write_default_config(path: Path | None = None) -> bool:
    """Write the starter config (defaults with help) unless a file exists; True when written."""
    path = config_path() if path is None else path
    if path.exists():
        return False
    try:
        ensure_dir(path.parent)
        with path.open("x", encoding="utf-8") as file:
            file.write(ShammahConfig().to_toml())
    except OSError as error:
        raise ConfigError(f"cannot write the starter config {path}: {error.strerror}") from error
    return True


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong in a config file; ``key`` is dotted (``model.temperature``), "" = file."""

    file: Path
    key: str
    message: str

    def __str__(self) -> str:
        home = os.path.expanduser("~")
        shown = str(self.file)
        if home != "~" and self.file.is_relative_to(home):
            shown = str(Path("~") / self.file.relative_to(home))
        return f"{shown}: {self.key}: {self.message}" if self.key else f"{shown}: {self.message}"


def load_config(path: Path | None = None) -> tuple[ShammahConfig, list[ConfigProblem]]:
    """Settings from ``path`` (default: the home's ``config.toml``) and what was wrong there.

    Never raises for a bad file: a missing file gives the defaults, an unreadable or non-TOML
    file gives the defaults and one problem, and a bad value keeps its default alone.
    """
    path = config_path() if path is None else path
    config = ShammahConfig()
    try:
        text = decode_settings(read_settings_file(path))
        if reason := nesting_problem(text):
            return config, [
                ConfigProblem(path, "", f"not valid here: {reason}; using all defaults")
            ]
        table = tomllib.loads(text)
    except FileNotFoundError:
        return config, []
    except UnreadableFile as error:
        return config, [ConfigProblem(path, "", f"{error}; using all defaults")]
    except tomllib.TOMLDecodeError as error:
        return config, [ConfigProblem(path, "", f"not valid TOML: {error}; using all defaults")]
    except (RecursionError, MemoryError):
        message = "not valid here: nested too deeply to read; using all defaults"
        return config, [ConfigProblem(path, "", message)]
    return config, _apply_table(config, table, "", path)


def _dotted_keys(settings: HasTraits, prefix: str = "") -> Iterator[str]:
    for name, trait in _ordered_traits(settings):
        yield prefix + name
        if _is_section(trait):
            yield from _dotted_keys(getattr(settings, name), f"{prefix}{name}.")


def _apply_table(
    settings: HasTraits, table: dict[str, Any], prefix: str, path: Path
) -> list[ConfigProblem]:
    """Set every known key of ``table`` on ``settings``; the problems met on the way."""
    problems: list[ConfigProblem] = []
    traits = settings.traits()
    for key, value in table.items():
        dotted = prefix + key
        trait = traits.get(key)
        if trait is None:
            problems.append(ConfigProblem(path, dotted, _unknown_key_message(dotted)))
        elif _is_section(trait) and isinstance(value, dict):
            section = getattr(settings, key)
            problems += _apply_table(section, value, dotted + ".", path)
        elif _is_section(trait):
            message = f"must be a table [{dotted}] (got {_toml_value(value)}); using its defaults"
            problems.append(ConfigProblem(path, dotted, message))
        elif refusal := _assign(settings, key, trait, value):
            default = _toml_value(trait.default())
            problems.append(ConfigProblem(path, dotted, f"{refusal}; using the default {default}"))
    return problems


# A problem message names such a setting and the kind of mistake, never its value: the cell,
# the kernel log and the model's context must not get a key that was typed in the wrong place.
_SECRET_NAME = re.compile(r"key|token|secret|password", re.IGNORECASE)


def _unknown_key_message(dotted: str) -> str:
    """Suggest the nearest known key, but never the table the unknown key sits in."""
    known = [k for k in _dotted_keys(ShammahConfig()) if not dotted.startswith(k + ".")]
    close = difflib.get_close_matches(dotted, known, n=1)
    return "unknown setting, ignored" + (f"; did you mean {close[0]}?" if close else "")


def _assign(settings: HasTraits, name: str, trait: TraitType[Any, Any], value: object) -> str:
    """Set one setting from its TOML value; why it was refused, or "" when it was set."""
    wanted = ""  # the numbers and choices check their own types
    if isinstance(trait, Bool) and not isinstance(value, bool):
        wanted = "true or false"
    elif isinstance(trait, Unicode) and not isinstance(value, str):
        wanted = "a string"
    elif isinstance(trait, List) and not (
        isinstance(value, list) and all(isinstance(item, str) for item in value)
    ):
        wanted = "a list of strings"
    hidden = _may_be_secret(name, value)
    if wanted:
        got = "its value is not shown" if hidden else f"got {_toml_value(value)}"
        return f"must be {wanted} ({got})"
    try:
        setattr(settings, name, value)
    except TraitError as error:
        return "has a value that is not allowed (not shown here)" if hidden else str(error)
    return ""


def _may_be_secret(name: str, value: object) -> bool:
    """A value other than a plain number of a setting named like a secret (``api_key``,
    ``[server] api_keys``); ``max_tokens = 1.5`` is still shown."""
    return bool(_SECRET_NAME.search(name)) and not isinstance(value, bool | int | float)
