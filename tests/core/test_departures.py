"""The seed departures: one list in core/departures.py, shown by ``config check`` and documented."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from guichet.core.config import CitizenConfig
from guichet.core.departures import DEPARTURES, DOC_PATH

ROOT = Path(__file__).resolve().parents[2]


def test_every_departure_and_every_citizen_key_is_documented() -> None:
    text = (ROOT / DOC_PATH).read_text(encoding="utf-8")
    keys = {d.key for d in DEPARTURES}
    for field in msgspec.structs.fields(CitizenConfig):
        assert f"citizen.{field.name}" in keys, f"[citizen] {field.name} has no Departure"
    for departure in DEPARTURES:
        first = departure.key.split(" / ")[0].split(",")[0]
        assert f"`{first}`" in text, f"{departure.key} is missing from {DOC_PATH}"
    assert DOC_PATH in (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("switch, shown", [("", "on"), ("confirm_contacts_after_recovery = false", "off")])
def test_config_check_shows_the_recovery_confirmation_switch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], switch: str, shown: str
) -> None:
    from guichet.cli import main

    text = (ROOT / "config/demo.toml").read_text(encoding="utf-8")
    path = tmp_path / "caisse.toml"
    path.write_text(text + f"\n[citizen]\n{switch}\n", encoding="utf-8")
    main(["config", "check", str(path)])
    out = capsys.readouterr().out
    assert f"  citizen.confirm_contacts_after_recovery = {shown}\n" in out
    assert "Departures from the seeds (docs/seed-departures.md):" in out


def test_a_help_link_must_be_https(tmp_path: Path) -> None:
    from guichet.core.config import ConfigError, load_config

    text = (ROOT / "config/demo.toml").read_text(encoding="utf-8")
    path = tmp_path / "caisse.toml"
    path.write_text(text + '\n[citizen]\ncode_help_url = "javascript:alert(1)"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="code_help_url"):
        load_config(path)
