"""Which model answers by default, and the overrides, without touching the network."""

from __future__ import annotations

from pathlib import Path

import pytest

from shammah_kernel.crisis import CrisisDetector
from shammah_kernel.errors import CommandError
from shammah_kernel.model_choice import GIB, ModelSource, choose_model, resolve, size_for_ram
from shammah_kernel.router import Route, decide_route

CONFIG = Path("config.toml")


@pytest.mark.parametrize(
    ("gib", "size"),
    [(4, "0.5B"), (7.6, "1.5B"), (8, "1.5B"), (15.5, "3B"), (24, "3B"), (31.3, "7B"), (64, "14B")],
)
def test_the_ram_table(gib: float, size: str) -> None:
    assert size_for_ram(int(gib * GIB)) == size


def test_default_is_by_ram_with_mlx_weights_on_apple_silicon() -> None:
    linux = choose_model("", "", CONFIG, environ={}, ram_bytes=16 * GIB, metal=False)
    assert linux.repo_id == "Qwen/Qwen2.5-3B-Instruct" and linux.source is ModelSource.BY_RAM
    assert "16 GiB" in linux.reason
    mac = choose_model("", "", CONFIG, environ={}, ram_bytes=8 * GIB, metal=True)
    assert mac.repo_id == "mlx-community/Qwen2.5-1.5B-Instruct-4bit"


def test_overrides_environment_then_id_then_size(tmp_path: Path) -> None:
    env = {"SHAMMAH_MODEL": "7B"}
    assert choose_model("x/y", "1.5B", CONFIG, environ=env, metal=False).repo_id.endswith(
        "7B-Instruct"
    )
    by_id = choose_model(str(tmp_path), "1.5B", CONFIG, environ={}, metal=False)
    assert by_id.path == tmp_path and "[model] id" in by_id.reason
    by_size = choose_model("", "1.5B", CONFIG, environ={}, metal=False)
    assert by_size.repo_id == "Qwen/Qwen2.5-1.5B-Instruct" and "size" in by_size.reason


def test_resolve_accepts_sizes_repos_folders_and_embedded(tmp_path: Path) -> None:
    assert resolve("0.5b", ModelSource.SELECTED, "r", metal=False).name == "Qwen2.5-0.5B-Instruct"
    assert resolve("org/model", ModelSource.SELECTED, "r", metal=False).repo_id == "org/model"
    assert resolve(str(tmp_path), ModelSource.SELECTED, "r", metal=False).path == tmp_path
    assert resolve("embedded", ModelSource.SELECTED, "r", metal=False).embedded
    with pytest.raises(CommandError, match="neither a size"):
        resolve("./no/such/folder", ModelSource.SELECTED, "r", metal=False)


@pytest.mark.parametrize(
    ("setting", "forced", "crisis", "ready", "key", "route"),
    [
        ("auto", False, False, True, True, Route.LOCAL),
        ("auto", False, False, False, True, Route.CLAUDE),
        ("auto", False, False, False, False, Route.LOCAL),
        ("local", False, False, False, True, Route.LOCAL),
        ("claude", False, False, True, True, Route.CLAUDE),
        ("auto", True, False, True, True, Route.CLAUDE),
        ("auto", False, True, True, True, Route.CLAUDE),
        ("local", False, True, True, False, Route.HELP),
    ],
)
def test_routes(
    setting: str, forced: bool, crisis: bool, ready: bool, key: bool, route: Route
) -> None:
    decision = decide_route(
        setting=setting,
        forced_claude=forced,
        crisis=crisis,
        local_ready=ready,
        claude_available=key,
    )
    assert decision.route is route


def test_claude_without_a_key_is_a_clear_error() -> None:
    with pytest.raises(CommandError, match="ANTHROPIC_API_KEY"):
        decide_route(
            setting="auto",
            forced_claude=True,
            crisis=False,
            local_ready=True,
            claude_available=False,
        )


def test_crisis_keywords_match_whole_phrases_case_insensitively(tmp_path: Path) -> None:
    detector = CrisisDetector()
    assert detector.matches("Sometimes I want  to DIE")
    assert not detector.matches("kill the process and restart it")
    custom = tmp_path / "words.txt"
    custom.write_text("# comment\nburned out\n")
    assert CrisisDetector.from_file(str(custom)).matches("I am burned out")
    assert not CrisisDetector.from_file(str(custom)).matches("suicide")
