"""The ``guichet`` command as an operator meets it: help with examples on every command, ``--version``,
exit statuses, tables with headers or JSON, colour only on a terminal (click's test runner)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import guichet
from guichet.cli import build_cli, main, show_listing
from tests.conftest import ROOT

DEMO = str(ROOT / "config/demo.toml")


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    found = []
    for name, command in group.commands.items():
        found.append(((*prefix, name), command))
        if isinstance(command, click.Group):
            found += _commands(command, (*prefix, name))
    return found


COMMANDS = _commands(build_cli())


def test_version() -> None:
    done = CliRunner().invoke(build_cli(), ["--version"])
    assert done.exit_code == 0 and done.output.strip() == f"guichet {guichet.__version__}"


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_every_command_and_option_has_help_and_every_command_examples(
    path: tuple[str, ...], command: click.Command
) -> None:
    assert command.help and command.help.strip(), f"guichet {' '.join(path)}: no help"
    if not isinstance(command, click.Group):
        assert "Examples:" in command.help and f"guichet {' '.join(path)}" in command.help, path
    for parameter in command.params:
        if isinstance(parameter, click.Option):
            assert parameter.help, f"guichet {' '.join(path)} {parameter.opts[0]}: no help"
    done = CliRunner().invoke(build_cli(), [*path, "--help"], env={"NO_COLOR": "1"})
    assert done.exit_code == 0 and "Usage: guichet " + " ".join(path) in done.output
    assert "\x1b[" not in done.output  # no colour with NO_COLOR


def test_every_config_taking_command_uses_the_same_option() -> None:
    for path, command in COMMANDS:
        names = {p.name for p in command.params}
        if isinstance(command, click.Group) or path in (("config", "check"), ("init",)):
            continue  # init writes a folder: it takes no config
        assert "config_path" in names, path  # --config FILE, never a positional file
        option = next(p for p in command.params if p.name == "config_path")
        assert option.opts == ["--config"] and option.envvar == "GUICHET_CONFIG", path


def test_every_listing_takes_json() -> None:
    listings = [("plugins",), ("outbox", "status"), ("audit", "tail"), ("requests", "list")]
    for path, command in COMMANDS:
        if path in listings:
            assert "as_json" in {p.name for p in command.params}, path


def test_bad_usage_exits_2_and_a_refused_operation_1(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["outbox", "retry"]) == 2  # the ID is missing
    assert "Missing argument 'ID'" in capsys.readouterr().err
    assert main(["plugins", "--config", DEMO, "--colour"]) == 2
    config = tmp_path / "c.toml"
    config.write_text(
        (ROOT / "config/demo.toml")
        .read_text(encoding="utf-8")
        .replace("sqlite:///var/guichet-demo.sqlite", f"sqlite:///{tmp_path / 'g.sqlite'}"),
        encoding="utf-8",
    )
    assert main(["db", "upgrade", "--config", str(config)]) == 0
    capsys.readouterr()
    assert main(["outbox", "retry", "7", "--config", str(config)]) == 1
    assert capsys.readouterr().err.strip() == "guichet: message 7 is not a failed message"


def test_a_listing_is_a_table_with_headers_or_json(capsys: pytest.CaptureFixture[str]) -> None:
    rows = [{"a": "x", "b": 1}, {"a": "longer", "b": None}]
    show_listing(rows, [("a", "Name"), ("b", "Count")], as_json=False, empty="none")
    lines = capsys.readouterr().out.splitlines()
    assert [line.split() for line in lines] == [["Name", "Count"], ["x", "1"], ["longer"]]
    assert not any(line != line.rstrip() for line in lines)
    assert not any("\x1b[" in line for line in lines)  # not a terminal: no colour
    show_listing(rows, [("a", "Name"), ("b", "Count")], as_json=True, empty="none")
    assert json.loads(capsys.readouterr().out) == [{"a": "x", "b": 1}, {"a": "longer", "b": None}]
    show_listing([], [("a", "Name")], as_json=False, empty="nothing here")
    assert capsys.readouterr().out == "nothing here\n"


def test_plugin_commands_read_like_the_core_ones() -> None:
    done = CliRunner().invoke(build_cli(), ["registry", "demo", "--help"])
    assert done.exit_code == 0
    assert re.search(r"--config\s+FILE", done.output) and "GUICHET_CONFIG" in done.output


def test_plugins_lists_the_registry_the_demo_mailbox_and_metrics_as_plugins(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins", "--json", "--config", DEMO]) == 0
    listed = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert listed["registry_tables"]["module"] == "guichet.plugins.registry_tables.hooks"
    assert {"guichet_registry_lookup", "guichet_commands"} <= set(listed["registry_tables"]["hooks"].split(", "))
    assert listed["demo_mailbox"]["module"] == "guichet.plugins.demo_mailbox.hooks"
    assert listed["demo_mailbox"]["hooks"] == "guichet_demo_mailbox"
    assert listed["metrics"]["module"] == "guichet.web.metrics"
    assert set(listed["metrics"]["hooks"].split(", ")) == {"guichet_event", "guichet_measure"}


def test_config_check_connect_reaches_every_server_and_names_the_one_that_fails(
    tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--connect reaches the database, Redis, the SMTP server and the SMS gateway, sends nothing,
    and turns "ready" into "not ready" naming the server it could not reach."""
    from guichet.testing import HttpSink, SmtpSink
    from tests.conftest import redis_url as needs_redis
    from tests.ops.serving import free_port

    redis_url = needs_redis()

    def check(argv: list[str]) -> tuple[int, str]:
        status = main(argv)
        return status, capsys.readouterr().out

    def config_for(smtp_port: int, sms_url: str) -> str:
        text = (ROOT / "config/demo.toml").read_text(encoding="utf-8")
        text = text.replace("port = 0 ", f'port = {smtp_port}\nsecurity = "none" ').replace(
            'url = "demo"', f'url = "{sms_url}"'
        )
        text = text.replace("mailbox = true", "mailbox = false").replace(', "demo_mailbox"]', "]")
        text = text.replace('url = "sqlite:///var/guichet-demo.sqlite"', f'url = "sqlite:///{tmp_path / "x.sqlite"}"')
        path = tmp_path / "caisse.toml"
        path.write_text(text + f'\n[redis]\nurl = "{redis_url}"\n', encoding="utf-8")
        return str(path)

    with SmtpSink() as smtp, HttpSink() as gateway:
        done = check(["config", "check", "--connect", "--config", config_for(smtp.port, f"{gateway.url}/sms")])
        assert done[0] == 0, done[1]
        assert "ok: database sqlite:///" in done[1] and "ok: Redis redis://" in done[1]
        assert f"ok: channel email: SMTP server 127.0.0.1:{smtp.port} answered" in done[1]
        assert "ok: channel sms: SMS gateway http://127.0.0.1:" in done[1]
        assert "ok: channel postal: nothing to reach" in done[1]
        assert "Ready to serve: yes" in done[1]
        assert not smtp.messages and all(r.method == "OPTIONS" for r in gateway.requests)  # nothing sent
        closed = free_port()
        done = check(["config", "check", "--connect", "--config", config_for(closed, f"{gateway.url}/sms")])
        assert done[0] == 1, done[1]
        assert f"FAILED: channel email: cannot reach the SMTP server 127.0.0.1:{closed}" in done[1]
        # a server that answers without the TLS the config asks for is named with its own words
        path = config_for(smtp.port, f"{gateway.url}/sms")
        Path(path).write_text(Path(path).read_text().replace('security = "none"', 'security = "starttls"'))
        done = check(["config", "check", "--connect", "--config", path])
        assert done[0] == 1 and "STARTTLS" in done[1], done[1]
    assert "Ready to serve: no" in done[1]
