"""Which backend answers a turn: the local model, Claude, or (in a crisis) help resources."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .errors import CommandError


class Route(enum.Enum):
    LOCAL = "local"
    CLAUDE = "claude"
    HELP = "help"  # a crisis message without Claude: show help resources, do not answer locally


@dataclass(frozen=True, slots=True)
class RouteDecision:
    route: Route
    reason: str


def decide_route(
    *,
    setting: str,
    forced_claude: bool,
    crisis: bool,
    local_ready: bool,
    claude_available: bool,
) -> RouteDecision:
    """`setting` is `[model] route`: auto (Claude until the local model is ready), local, claude."""
    if crisis:
        if claude_available:
            return RouteDecision(Route.CLAUDE, "the message matched a crisis keyword")
        return RouteDecision(Route.HELP, "the message matched a crisis keyword")
    if forced_claude or setting == "claude":
        if not claude_available:
            why = "/claude" if forced_claude else '[model] route = "claude"'
            raise CommandError(
                f"{why} needs an Anthropic key: set ANTHROPIC_API_KEY or api_key in config.toml"
            )
        return RouteDecision(Route.CLAUDE, "/claude" if forced_claude else "route = claude")
    if setting == "local" or local_ready:
        return RouteDecision(Route.LOCAL, "route = local" if setting == "local" else "ready")
    if claude_available:
        return RouteDecision(Route.CLAUDE, "the local model is not ready yet")
    return RouteDecision(Route.LOCAL, "no Anthropic key: waiting for the local model")
