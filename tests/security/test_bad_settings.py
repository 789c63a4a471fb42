"""Bad settings files give one clear line (issue 8): deep nesting, special files and huge files
never escape as an exception, hang or fill memory, and no problem repeats a secret's value."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from shammah_kernel.config import ShammahConfig, load_config

DEPTH = 100_000
DEEP = {
    "arrays": "a = " + "[" * DEPTH + "]" * DEPTH,
    "inline tables": "a = " + "{b = " * DEPTH + "1" + "}" * DEPTH,
    "dotted key": "a." * DEPTH + "b = 1",
    "table header": "[" + "a." * DEPTH + "b]",
    "array of tables": "[[" + "a." * DEPTH + "b]]",
    "spaced dotted key": "a . " * DEPTH + "b = 1",
    "deep after good lines": "streaming = false\n[model]\nmax_tokens = 5\n" + "x." * DEPTH + "y=1",
    "in a known table": "[model]\nid = " + "[" * DEPTH,
}


@pytest.mark.parametrize("text", DEEP.values(), ids=DEEP.keys())
def test_deep_nesting_is_one_problem(tmp_path: Path, text: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    config, problems = load_config(path)
    assert [p.key for p in problems] == [""]
    assert "using all defaults" in problems[0].message
    assert config.model.max_tokens == ShammahConfig().model.max_tokens


def test_nesting_a_real_config_uses_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    text = '[model]\nsystem_prompt = """a.b.c [[[{{{ # """\n[lora]\ntarget_modules = [["x"]]\n'
    path.write_text(text + "# " + "[" * 500 + "\n[server]\napi_keys = ['a.b.' ]\n")
    config, problems = load_config(path)
    assert config.model.system_prompt == "a.b.c [[[{{{ # "
    assert [p.key for p in problems] == ["lora.target_modules"]


def test_special_and_huge_files_are_refused_quickly(tmp_path: Path) -> None:
    """In a child with a timeout and a memory cap: the old code blocked on the FIFO and read
    /dev/zero until memory ran out."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    big = tmp_path / "big.toml"
    big.write_text("# padding\n" * 200_000)  # 2 MB of comments
    zero = tmp_path / "zero.toml"
    zero.symlink_to("/dev/zero")
    linked = tmp_path / "linked.toml"
    linked.symlink_to(fifo)
    paths = [str(p) for p in (zero, fifo, linked, big, tmp_path)]
    script = textwrap.dedent(
        f"""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
        from pathlib import Path
        from shammah_kernel.config import load_config
        for path in {paths!r}:
            config, problems = load_config(Path(path))
            print(len(problems), problems[0].message)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    lines = done.stdout.splitlines()
    assert len(lines) == 5
    assert all(line.startswith("1 cannot be read") for line in lines), lines
    assert "larger than 1024 KiB" in lines[3]
    assert "a folder" in lines[4] and "a FIFO" in lines[1] and "a device" in lines[0]


SECRET = "sk-ant-api03-Zq9SECRETVALUE7x"
LEAKS = [
    f'api_key = ["{SECRET}"]',
    f'api_key = {{ value = "{SECRET}" }}',
    f'api_key = [["{SECRET}"]]',
    f'[server]\napi_keys = "{SECRET}"',
    f'[server]\napi_keys = ["ok", 1, "{SECRET}"]',
    f'[server]\napi_keys = [["{SECRET}"]]',
    f'[server]\napi_keys = {{ a = "{SECRET}" }}',
    f'anthropic_api_key = "{SECRET}"',  # unknown keys never show a value
    f'[server]\npassword = "{SECRET}"',
    f'[tools]\nhf_token = "{SECRET}"',
    f"api_key = {SECRET}",  # not valid TOML
    f'api_key = "{SECRET}',  # a string that never ends
    f'api_key = """{SECRET}',
    f"[model]\napi_secret = '{SECRET}'",
]


@pytest.mark.parametrize("line", LEAKS)
def test_problems_never_repeat_a_secret(tmp_path: Path, line: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(line + "\n")
    config, problems = load_config(path)
    assert len(problems) == 1
    shown = str(problems[0])
    assert "SECRETVALUE" not in shown and "Zq9" not in shown, shown
    assert config.api_key == ""


def test_a_plain_number_setting_still_shows_its_value(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[model]\nmax_tokens = 1.5\n")
    _, problems = load_config(path)
    assert "(got 1.5)" in problems[0].message


@pytest.mark.timeout(60)
def test_a_crisis_keywords_fifo_is_one_clear_problem(tmp_path: Path) -> None:
    import os

    from shammah_kernel.crisis import CrisisDetector
    from shammah_kernel.errors import ConfigError

    fifo = tmp_path / "keywords"
    os.mkfifo(fifo)  # a plain read would wait for a writer forever
    for path in (str(fifo), "~nosuchuser/keywords", "/dev/zero"):
        with pytest.raises(ConfigError, match="crisis_keywords_path: cannot read"):
            CrisisDetector.from_file(path)
