"""Tests of the settings: defaults, loading, problems with bad files, and the starter file."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from traitlets import HasTraits, TraitError

from shammah_kernel import config as config_module
from shammah_kernel.config import (
    ConfigProblem,
    Device,
    ModelSize,
    Route,
    ShammahConfig,
    config_path,
    ensure_dir,
    load_config,
    models_dir,
    sessions_dir,
    write_default_config,
)
from shammah_kernel.errors import ConfigError

# The "Settings" block of PRODUCT.md, verbatim: the defaults must match it.
PRODUCT_TOML = """\
api_key = ""                 # Anthropic key; ANTHROPIC_API_KEY wins if set
streaming = true
crisis_keywords_path = ""    # one keyword or phrase a line

[model]
size = ""                    # "", "0.5B", "1.5B", "3B", "7B", "14B"; "" = by RAM
id = ""                      # a Hugging Face repo or local folder; overrides size
device = "auto"              # auto | gpu | cpu
route = "auto"               # auto | local | claude
max_tokens = 1024
temperature = 0.2
context_length = 8192

[lora]
rank = 16
alpha = 32.0
dropout = 0.1
learning_rate = 1e-4
batch_size = 4
epochs = 3
target_modules = ["q_proj", "v_proj"]
num_layers = 16
auto_train = true
auto_train_threshold = 10
high_weight = 10.0
medium_weight = 3.0
normal_weight = 1.0
collect_all_turns = true

[sampling]
claude_share = 0.05          # share of local turns also asked of Claude, with full context

[server]
bind_address = "127.0.0.1:8000"
max_sessions = 100
session_timeout_minutes = 60
auth_enabled = false
api_keys = []
"""

FULL_TOML = """\
api_key = "sk-test"
streaming = false
crisis_keywords_path = "/tmp/keywords.txt"

[model]
size = "7B"
id = "mlx-community/Qwen2.5-7B-Instruct-4bit"
device = "cpu"
route = "claude"
max_tokens = 256
temperature = 0
top_p = 0.9
repetition_penalty = 1.1
context_length = 4096
system_prompt = "Be brief."

[lora]
rank = 8
alpha = 16
dropout = 0.0
learning_rate = 2e-5
batch_size = 1
epochs = 1
target_modules = ["q_proj", "k_proj", "v_proj"]
num_layers = 8
auto_train = false
auto_train_threshold = 50
high_weight = 20.0
medium_weight = 5.0
normal_weight = 0.5
collect_all_turns = false

[sampling]
claude_share = 1.0

[server]
bind_address = "[::1]:9000"
max_sessions = 5
session_timeout_minutes = 1
auth_enabled = true
api_keys = ["a", "b"]
"""


def settings_values(settings: HasTraits, prefix: str = "") -> dict[str, object]:
    """Every setting by dotted key, sections flattened."""
    values: dict[str, object] = {}
    for name in settings.trait_names():
        value = getattr(settings, name)
        if isinstance(value, HasTraits):
            values |= settings_values(value, f"{prefix}{name}.")
        else:
            values[prefix + name] = value
    return values


def load_text(path: Path, text: str) -> tuple[ShammahConfig, list[ConfigProblem]]:
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def test_defaults_match_product_settings(tmp_path: Path) -> None:
    config, problems = load_text(tmp_path / "config.toml", PRODUCT_TOML)
    assert problems == []
    assert settings_values(config) == settings_values(ShammahConfig())
    product = tomllib.loads(PRODUCT_TOML)
    defaults = ShammahConfig()
    for section in ("model", "lora", "sampling", "server"):
        for key, value in product[section].items():
            assert getattr(getattr(defaults, section), key) == value, f"{section}.{key}"
    assert defaults.model.top_p == 1.0
    assert defaults.model.repetition_penalty == 1.0
    assert defaults.model.system_prompt == ""
    assert defaults.model.size is ModelSize.BY_RAM
    assert defaults.model.device is Device.AUTO
    assert defaults.model.route is Route.AUTO


def test_missing_file_gives_defaults_and_no_problems(tmp_path: Path) -> None:
    config, problems = load_config(tmp_path / "absent.toml")
    assert problems == []
    assert settings_values(config) == settings_values(ShammahConfig())


def test_full_valid_file_loads(tmp_path: Path) -> None:
    config, problems = load_text(tmp_path / "config.toml", FULL_TOML)
    assert problems == []
    assert config.api_key == "sk-test"
    assert config.streaming is False
    assert config.model.size is ModelSize.B7
    assert config.model.device is Device.CPU
    assert config.model.route is Route.CLAUDE
    assert config.model.temperature == 0.0
    assert isinstance(config.model.temperature, float)
    assert config.model.top_p == 0.9
    assert config.model.system_prompt == "Be brief."
    assert config.lora.alpha == 16.0
    assert config.lora.learning_rate == 2e-5
    assert config.lora.target_modules == ["q_proj", "k_proj", "v_proj"]
    assert config.sampling.claude_share == 1.0
    assert config.server.bind_address == "[::1]:9000"
    assert config.server.api_keys == ["a", "b"]


def test_shammah_home_moves_every_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "elsewhere"
    monkeypatch.setenv("SHAMMAH_HOME", str(home))
    assert config_module.shammah_home() == home
    assert config_path() == home / "config.toml"
    assert models_dir() == home / "models"
    assert sessions_dir() == home / "sessions"
    assert not home.exists()  # paths are only computed; folders appear when asked for
    assert ensure_dir(sessions_dir()).is_dir()


def test_home_defaults_to_dot_shammah(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHAMMAH_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert config_module.shammah_home() == tmp_path / ".shammah"


def test_load_config_reads_the_home_file(shammah_home: Path) -> None:
    (shammah_home / "config.toml").write_text("[model]\nmax_tokens = 77\n", encoding="utf-8")
    config, problems = load_config()
    assert problems == []
    assert config.model.max_tokens == 77


def test_malformed_toml_gives_defaults_and_one_problem(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    config, problems = load_text(path, "streaming = false\n[model\nmax_tokens = 5\n")
    assert settings_values(config) == settings_values(ShammahConfig())
    assert len(problems) == 1
    assert problems[0].file == path
    assert problems[0].key == ""
    assert "line 2" in str(problems[0])
    assert str(problems[0]).startswith(f"{path}: not valid TOML")


def test_unreadable_file_is_a_problem_not_an_exception(tmp_path: Path) -> None:
    folder = ensure_dir(tmp_path / "config.toml")
    _, problems = load_config(folder)
    assert [p.key for p in problems] == [""]
    assert "cannot be read" in problems[0].message
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"api_key = '\xff'\n")
    _, problems = load_config(binary)
    assert len(problems) == 1


def test_out_of_range_value_keeps_its_default_only(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    config, problems = load_text(path, "[model]\ntemperature = -1\nmax_tokens = 512\n")
    assert config.model.temperature == 0.2
    assert config.model.max_tokens == 512
    assert [p.key for p in problems] == ["model.temperature"]
    message = "model.temperature: must be >= 0 (got -1); using the default 0.2"
    assert str(problems[0]) == f"{path}: {message}"


@pytest.mark.parametrize(
    ("table", "line", "wanted"),
    [
        ("model", "max_tokens = 0", "must be >= 1"),
        ("model", "context_length = 100", "must be >= 256"),
        ("model", "top_p = 0", "must be > 0"),
        ("model", "top_p = 1.5", "must be <= 1"),
        ("model", "repetition_penalty = 0.0", "must be > 0"),
        ("lora", "rank = 0", "must be >= 1"),
        ("lora", "learning_rate = 0", "must be > 0"),
        ("lora", "dropout = 1.0", "must be < 1"),
        ("lora", "high_weight = -3", "must be > 0"),
        ("sampling", "claude_share = 1.5", "must be <= 1"),
        ("sampling", "claude_share = nan", "must be >= 0"),
        ("server", 'bind_address = "localhost"', "must be HOST:PORT"),
        ("server", 'bind_address = "localhost:99999"', "must be HOST:PORT"),
        ("server", 'bind_address = ":8000"', "must be HOST:PORT"),
        ("server", "max_sessions = 0", "must be >= 1"),
    ],
)
def test_range_problems_name_the_key(tmp_path: Path, table: str, line: str, wanted: str) -> None:
    config, problems = load_text(tmp_path / "config.toml", f"[{table}]\n{line}\n")
    key = f"{table}.{line.split()[0]}"
    assert [p.key for p in problems] == [key]
    assert wanted in problems[0].message
    assert "using the default" in problems[0].message
    assert settings_values(config) == settings_values(ShammahConfig())


@pytest.mark.parametrize(
    ("line", "key", "wanted"),
    [
        ('streaming = "yes"', "streaming", "must be true or false"),
        ("api_key = 5", "api_key", "must be a string (got 5)"),
        ("[model]\nmax_tokens = 1.5", "model.max_tokens", "must be a whole number (got 1.5)"),
        ("[model]\nmax_tokens = true", "model.max_tokens", "must be a whole number (got true)"),
        ('[model]\ntemperature = "hot"', "model.temperature", 'must be a number (got "hot")'),
        ('[lora]\ntarget_modules = "q_proj"', "lora.target_modules", "a list of strings"),
        ("[lora]\ntarget_modules = [1]", "lora.target_modules", "a list of strings"),
        ("model = 3", "model", "must be a table"),
    ],
)
def test_wrong_type_keeps_the_default(tmp_path: Path, line: str, key: str, wanted: str) -> None:
    config, problems = load_text(tmp_path / "config.toml", line + "\n")
    assert [p.key for p in problems] == [key]
    assert wanted in problems[0].message
    assert settings_values(config) == settings_values(ShammahConfig())


def test_bad_enum_value_lists_the_choices(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    config, problems = load_text(path, '[model]\ndevice = "tpu"\nsize = "2B"\nroute = "local"\n')
    assert config.model.device is Device.AUTO
    assert config.model.size is ModelSize.BY_RAM
    assert config.model.route is Route.LOCAL
    assert [p.key for p in problems] == ["model.device", "model.size"]
    assert 'must be one of "auto", "gpu", "cpu" (got "tpu")' in problems[0].message
    assert '"0.5B"' in problems[1].message


def test_unknown_key_suggests_a_close_match(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    text = "[model]\ntemprature = 0.5\nmax_tokens = 9\n[modle]\nsize = '3B'\n[lora]\nqqqqqqqq = 1\n"
    config, problems = load_text(path, text)
    assert config.model.max_tokens == 9
    assert config.model.temperature == 0.2
    assert [p.key for p in problems] == ["model.temprature", "modle", "lora.qqqqqqqq"]
    assert str(problems[0]) == (
        f"{path}: model.temprature: unknown setting, ignored; did you mean model.temperature?"
    )
    assert "did you mean model?" in problems[1].message
    assert problems[2].message == "unknown setting, ignored"


def test_problem_shows_the_home_as_tilde(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    problem = ConfigProblem(tmp_path / ".shammah" / "config.toml", "model.id", "bad")
    assert str(problem) == "~/.shammah/config.toml: model.id: bad"


def test_to_toml_round_trips(tmp_path: Path) -> None:
    config = ShammahConfig()
    config.api_key = 'sk-"quoted"\\back'
    config.streaming = False
    config.model.size = ModelSize.B14
    config.model.route = Route.LOCAL
    config.model.temperature = 1.25
    config.model.system_prompt = "Line one\nline two\ttab, ünïcode, \x7f, \x01"
    config.lora.learning_rate = 3e-6
    config.lora.target_modules = ["gate_proj"]
    config.sampling.claude_share = 0.0
    config.server.api_keys = ["k1", "k2"]
    loaded, problems = load_text(tmp_path / "config.toml", config.to_toml())
    assert problems == []
    assert settings_values(loaded) == settings_values(config)


def test_to_toml_comments_every_setting_with_its_help() -> None:
    text = ShammahConfig().to_toml()
    assert "# Sampling temperature; 0 is greedy. Default: 0.2.\ntemperature = 0.2" in text
    assert tomllib.loads(text)["model"]["device"] == "auto"


def test_write_default_config_never_overwrites() -> None:
    assert write_default_config() is True
    written = config_path().read_text(encoding="utf-8")
    assert written == ShammahConfig().to_toml()
    config_path().write_text("streaming = false\n", encoding="utf-8")
    assert write_default_config() is False
    assert config_path().read_text(encoding="utf-8") == "streaming = false\n"


def test_write_default_config_reports_an_unwritable_place(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot write"):
        write_default_config(blocker / "config.toml")


def test_every_setting_has_help_with_its_default() -> None:
    def check(settings: HasTraits) -> None:
        for name, trait in settings.traits().items():
            assert trait.help, name
            value = getattr(settings, name)
            if isinstance(value, HasTraits):
                check(value)
            else:
                assert "Default: " in trait.help, name

    check(ShammahConfig())


def test_assignment_in_code_is_validated_too() -> None:
    config = ShammahConfig()
    with pytest.raises(TraitError, match="must be >= 0"):
        config.model.temperature = -0.5
    with pytest.raises(TraitError, match="must be one of"):
        config.model.device = "tpu"
    config.model.device = "gpu"
    assert config.model.device is Device.GPU
