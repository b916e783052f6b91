"""Config files: unknown keys name the closest valid one; CLI overrides win."""

from __future__ import annotations

import dataclasses

import pytest

from dreamgym_cli.config import build, help_of, option, to_dict
from dreamgym_cli.errors import InputError


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    lr: float = option(1e-3, help="Learning rate.")
    group_size: int = option(4, help="Rollouts per task.")
    tags: list = option(["a"], help="Free-form tags.")


def test_file_then_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("lr: 0.5\ngroup-size: 8\n")
    c = build(DemoConfig, f, lr=None, group_size=16)
    assert c.lr == 0.5 and c.group_size == 16
    assert to_dict(c) == {"lr": 0.5, "group_size": 16, "tags": ["a"]}
    assert help_of(DemoConfig, "lr") == "Learning rate."


def test_toml_config(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("lr = 0.25\n")
    assert build(DemoConfig, f).lr == 0.25


def test_unknown_key_names_closest(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("group_sise: 8\n")
    with pytest.raises(InputError) as info:
        build(DemoConfig, f)
    assert "group_sise" in str(info.value) and "did you mean 'group_size'" in str(info.value)
    assert str(f) in str(info.value)


def test_unparseable_config_reports_line(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("lr: 0.1\nbad: [unclosed\n")
    with pytest.raises(InputError) as info:
        build(DemoConfig, f)
    assert info.value.line is not None and info.value.file == str(f)


def test_yaml_is_data_not_code(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("lr: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(InputError):
        build(DemoConfig, f)


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        DemoConfig().lr = 1.0  # type: ignore[misc]


def test_input_error_keeps_location_across_processes():
    import pickle

    e = pickle.loads(pickle.dumps(InputError("bad value", file="T.parquet", line=3, field="seed")))
    assert (e.file, e.line, e.field) == ("T.parquet", 3, "seed")
    assert e.one_line() == "T.parquet:3, field 'seed': bad value"
