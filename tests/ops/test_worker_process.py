"""What ``guichet serve`` does once per worker process, beyond building the app."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from guichet.web.app import app_from_environment
from tests.conftest import portal_config_text


def test_a_worker_moves_its_start_up_objects_out_of_the_cyclic_collector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "caisse.toml"
    config.write_text(portal_config_text() + f'\n[database]\nurl = "sqlite:///{tmp_path / "g.sqlite"}"\n')
    monkeypatch.setenv("GUICHET_CONFIG", str(config))
    monkeypatch.setattr("guichet.web.app.configure_logging", lambda *args: None)  # the test run keeps its own logging
    gc.unfreeze()
    try:
        app = app_from_environment()
        # modules, templates and plugins are never walked again by a full collection (the p99 of a
        # step fragment under load went from ~42 to ~14 ms: docs/benchmarks.md)
        assert gc.get_freeze_count() > 10_000
        assert app.state.services.config.caisse.id
    finally:
        gc.unfreeze()
