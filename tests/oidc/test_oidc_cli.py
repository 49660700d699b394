"""``guichet keys rotate`` and ``guichet clients add|list|remove`` on a caisse's config file."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from guichet.cli import main
from guichet.core.config import load_config
from guichet.core.services import build_services
from guichet.web.oidc.provider import Provider
from tests.conftest import portal_config_text
from tests.oidc.support import oidc_extra


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "caisse.toml"
    text = portal_config_text(oidc_extra(tmp_path)).replace(
        "[server]\n", f'[database]\nurl = "sqlite:///{tmp_path / "guichet.sqlite"}"\n\n[server]\n', 1
    )
    path.write_text(text)
    assert main(["db", "upgrade", "--config", str(path)]) == 0
    return path


def provider_state(path: Path) -> tuple[list[str], list[str]]:
    """The published kids, and the clients the app would serve."""

    async def read() -> tuple[list[str], list[str]]:
        services = build_services(load_config(path))
        await services.database.connect()
        try:
            provider = Provider(services)
            await provider.load_stored_clients()
            return [k["kid"] for k in (await provider.jwks())["keys"]], sorted(provider.clients)
        finally:
            await services.close()

    return asyncio.run(read())


def test_keys_rotate_keeps_the_old_keys_published(config_file: Path, capsys: Any) -> None:
    assert main(["keys", "rotate", "--config", str(config_file)]) == 0, capsys.readouterr()
    first, _ = provider_state(config_file)
    assert len(first) == 2, first
    assert main(["keys", "rotate", "--config", str(config_file)]) == 0, capsys.readouterr()
    second, _ = provider_state(config_file)
    assert len(second) == 4 and set(first) < set(second), (first, second)
    printed = capsys.readouterr().out
    assert "new signing keys" in printed and '"d"' not in printed


def test_clients_add_list_remove(config_file: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELEVES_SECRET", "un-secret-de-service-assez-long-0123")
    args = [
        "clients",
        "add",
        "releves",
        "--config",
        str(config_file),
        "--name",
        "Mes relevés",
        "--redirect-uri",
        "https://releves.test/cb",
        "--secret-env",
        "RELEVES_SECRET",
    ]
    assert main(args) == 0
    assert main(args) == 2  # twice: refused
    assert (
        main(
            [
                "clients",
                "add",
                "attestations",
                "--config",
                str(config_file),
                "--redirect-uri",
                "https://x.test/cb",
                "--auth-method",
                "none",
            ]
        )
        == 2
    )  # the config's own
    assert main(["clients", "add", "sans-retour", "--config", str(config_file), "--auth-method", "none"]) == 2
    _, served = provider_state(config_file)
    assert "releves" in served and "attestations" in served
    capsys.readouterr()
    assert main(["clients", "list", "--json", "--config", str(config_file)]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {c["id"]: c["source"] for c in listed}["releves"] == "database"
    assert "un-secret-de-service" not in json.dumps(listed)
    assert main(["clients", "remove", "attestations", "--config", str(config_file)]) == 2  # the config's own
    assert main(["clients", "remove", "releves", "--config", str(config_file)]) == 0
    assert "releves" not in provider_state(config_file)[1]


def test_config_check_has_an_oidc_section(config_file: Path, capsys: Any, tmp_path: Path) -> None:
    code = main(["config", "check", str(config_file)])
    out = capsys.readouterr().out
    assert "OpenID Connect provider: on, issuer http://127.0.0.1:8000" in out
    assert "client partenaire (Partenaire social): private_key_jwt, third party (the person consents)" in out
    assert "note: client partenaire may receive the NIR (scope nir)" in out
    assert "note: client appli is public" in out
    assert "s3cret" not in out
    (tmp_path / "partenaire.jwks").write_text("{}")
    assert main(["config", "check", str(config_file)]) == 1
    assert "no usable JWKS" in capsys.readouterr().out
    assert code == 0, out
