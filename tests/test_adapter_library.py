"""The adapter folders under the Shammah home: naming, replacement by renames, import and export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shammah_kernel.adapter_library import AdapterLibrary, check_name
from shammah_kernel.errors import CommandError


def _adapter(folder: Path, base: str = "base-model", marker: str = "v1") -> Path:
    folder.mkdir(parents=True)
    (folder / "adapters.safetensors").write_text(marker)
    (folder / "adapter_config.json").write_text(json.dumps({"model": base, "num_layers": 2}))
    meta = {
        "base_model": base,
        "created_at": "2026-11-21T10:00:00+00:00",
        "examples": [{"id": 1, "weight": 10.0}, {"id": 2, "weight": 1.0}],
        "validation_examples": [],
        "train_loss": 0.5,
        "val_loss": None,
        "seconds": 12.5,
    }
    (folder / "shammah.json").write_text(json.dumps(meta))
    return folder


def test_publish_replaces_a_folder_as_a_whole(tmp_path: Path) -> None:
    library = AdapterLibrary(tmp_path / "adapters")
    library.publish("a", _adapter(library.staging_dir("a"), marker="v1"))
    library.publish("a", _adapter(library.staging_dir("a"), marker="v2"))
    assert (library.path("a") / "adapters.safetensors").read_text() == "v2"
    assert library.names() == ["a"]
    assert [p.name for p in library.root.iterdir()] == ["a"]  # no staged or old folder left


def test_a_replacement_cut_between_its_renames_is_finished(tmp_path: Path) -> None:
    library = AdapterLibrary(tmp_path / "adapters")
    _adapter(library.root / ".a.old")  # the crash came after the first rename only
    assert library.names() == ["a"]
    _adapter(library.root / ".b.old", marker="old")
    _adapter(library.root / "b", marker="new")  # ... or after both
    assert library.names() == ["a", "b"]
    assert (library.path("b") / "adapters.safetensors").read_text() == "new"


def test_info_reads_the_metadata_and_flags_damage(tmp_path: Path) -> None:
    library = AdapterLibrary(tmp_path / "adapters")
    library.publish("a", _adapter(library.staging_dir("a")))
    info = library.info("a")
    assert (info.base_model, info.examples, info.train_loss, info.seconds, info.problem) == (
        "base-model",
        2,
        0.5,
        12.5,
        "",
    )
    (library.path("a") / "adapters.safetensors").unlink()
    assert "missing" in library.info("a").problem


def test_the_current_adapter_is_remembered_per_base_model(tmp_path: Path) -> None:
    library = AdapterLibrary(tmp_path / "adapters")
    assert library.current("m1") is None
    library.set_current("m1", "a")
    library.set_current("m2", "b")
    assert AdapterLibrary(tmp_path / "adapters").current("m1") == "a"
    library.set_current("m1", None)
    assert library.current("m1") is None and library.current("m2") == "b"


def test_next_name_skips_names_in_use(tmp_path: Path) -> None:
    library = AdapterLibrary(tmp_path / "adapters")
    assert library.next_name() == "adapter-1"
    library.publish("adapter-1", _adapter(library.staging_dir("adapter-1")))
    library.set_current("m", "adapter-2")  # chosen with /adapters new, not trained yet
    assert library.next_name() == "adapter-3"


@pytest.mark.parametrize("name", ["", "../x", "a/b", ".hidden", "x" * 65, "a b"])
def test_unsafe_names_are_refused(name: str) -> None:
    with pytest.raises(CommandError, match="not a usable adapter name"):
        check_name(name)


def test_export_and_import_round_trip(tmp_path: Path) -> None:
    library = AdapterLibrary(tmp_path / "adapters")
    library.publish("a", _adapter(library.staging_dir("a")))
    exported = library.export("a", tmp_path / "shared")
    assert (exported / "adapters.safetensors").read_text() == "v1"
    into = tmp_path / "outbox"
    into.mkdir()
    assert library.export("a", into) == into / "a"  # an existing folder receives a copy
    with pytest.raises(CommandError, match="already exists"):
        library.export("a", into)
    other = AdapterLibrary(tmp_path / "other")
    assert other.import_(exported) == "shared"
    assert other.info("shared").base_model == "base-model"
    with pytest.raises(CommandError, match="exists already"):
        other.import_(exported)


def test_import_refuses_what_is_not_an_adapter(tmp_path: Path) -> None:
    library = AdapterLibrary(tmp_path / "adapters")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CommandError, match="not an adapter folder"):
        library.import_(empty)
    unknown = _adapter(tmp_path / "unknown")
    (unknown / "shammah.json").unlink()
    (unknown / "adapter_config.json").write_text(json.dumps({"num_layers": 2}))
    with pytest.raises(CommandError, match="which base model"):
        library.import_(unknown)
    assert library.names() == []


def test_delete_removes_the_folder_and_forgets_it_as_current(tmp_path: Path) -> None:
    library = AdapterLibrary(tmp_path / "adapters")
    library.publish("a", _adapter(library.staging_dir("a")))
    library.set_current("m", "a")
    library.delete("a")
    assert library.names() == [] and library.current("m") is None
    with pytest.raises(CommandError, match="no adapter named"):
        library.delete("a")
