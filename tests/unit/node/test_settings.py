"""NodeSettings: TOML plus environment overrides, and clear errors for bad configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from d4h.errors import ConfigError
from d4h.node.settings import Role, load_settings


def _write(tmp_path: Path, body: str) -> Path:
    (tmp_path / "config.toml").write_text(body)
    return tmp_path


GOOD = """
roles = ["holder", "user"]
port = 8101
[participant]
name = "Hospital"
"""


def test_toml_values_are_loaded(tmp_path: Path) -> None:
    s = load_settings(_write(tmp_path, GOOD))
    assert s.roles == [Role.HOLDER, Role.USER]
    assert s.base_url == "http://127.0.0.1:8101"
    assert s.effective_database_url.endswith("data/node.db")


def test_environment_overrides_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("D4H_PORT", "9000")
    monkeypatch.setenv("D4H_PARTICIPANT__NAME", "Renamed")
    s = load_settings(_write(tmp_path, GOOD))
    assert s.port == 9000 and s.participant.name == "Renamed"


def test_missing_config_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no node configuration") as err:
        load_settings(tmp_path)
    assert "d4h node init" in err.value.one_line()


def test_malformed_toml_is_reported_with_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config.toml is not valid TOML"):
        load_settings(_write(tmp_path, "roles = [holder"))


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (GOOD.replace('"user"', '"hacker"'), "roles.1"),
        (GOOD.replace("port = 8101", "port = 70000"), "port"),
        (GOOD + "\nunknown_key = 1\n", "unknown_key"),
        (GOOD.replace('roles = ["holder", "user"]', "roles = []"), "roles"),
        (GOOD.replace('roles = ["holder", "user"]', 'roles = ["user", "user"]'), "roles"),
    ],
)
def test_invalid_values_name_the_key(tmp_path: Path, body: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_settings(_write(tmp_path, body))


def test_production_mode_refuses_plain_http_and_sqlite(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="https"):
        load_settings(_write(tmp_path, "dev_mode = false\n" + GOOD))
    with pytest.raises(ConfigError, match="PostgreSQL"):
        load_settings(_write(tmp_path, 'dev_mode = false\npublic_url = "https://h.example"\n' + GOOD))
