"""Reading a call's arguments: checking them against the tool's JSON Schema, and typed access."""

from __future__ import annotations

import math
from collections.abc import Mapping

from .base import Arguments, Tool


def str_arg(arguments: Arguments, key: str, default: str = "") -> str:
    value = arguments.get(key, default)
    return value if isinstance(value, str) else str(value)


def number_arg(arguments: Arguments, key: str) -> float | None:
    value = arguments.get(key)
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any float
        return None
    return number if math.isfinite(number) else None  # check_arguments rejects these first


def int_arg(arguments: Arguments, key: str) -> int | None:
    value = number_arg(arguments, key)
    return None if value is None else int(value)


def bool_arg(arguments: Arguments, key: str) -> bool:
    return arguments.get(key) is True


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


def check_arguments(tool: Tool, arguments: object) -> str | None:
    """What is wrong with `arguments` for `tool` (required keys, types, bounds), or None."""
    if not isinstance(arguments, Mapping):
        return f"arguments must be a JSON object, not {type(arguments).__name__}"
    properties: Mapping[str, Mapping[str, object]] = tool.parameters.get("properties", {})  # type: ignore[assignment]
    required: list[str] = tool.parameters.get("required", [])  # type: ignore[assignment]
    missing = [key for key in required if key not in arguments]
    if missing:
        return f"missing required argument(s): {', '.join(missing)}"
    for key, value in arguments.items():
        schema = properties.get(key)
        if schema is None:
            return f"unknown argument {key!r}; expected: {', '.join(properties)}"
        expected = str(schema.get("type"))
        # bool is an int in Python but not in JSON Schema; 3.0 is a JSON integer.
        wrong_bool = isinstance(value, bool) and expected != "boolean"
        whole = isinstance(value, float) and value.is_integer() and expected == "integer"
        if wrong_bool or not (whole or isinstance(value, _JSON_TYPES.get(expected, (object,)))):
            return f"argument {key!r} must be a {expected}, not {type(value).__name__}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"argument {key!r} must be a finite number, not {value}"  # NaN passes bounds
        longest = schema.get("maxLength")
        if isinstance(value, str) and isinstance(longest, int) and len(value) > longest:
            return f"argument {key!r} is longer than {longest:,} characters"
        low, high = schema.get("minimum"), schema.get("maximum")
        if isinstance(value, int | float) and isinstance(low, int | float) and value < low:
            return f"argument {key!r} must be at least {low}"
        if isinstance(value, int | float) and isinstance(high, int | float) and value > high:
            return f"argument {key!r} must be at most {high}"
    return None
