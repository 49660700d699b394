"""The wheel installs anywhere: built from this tree, installed with its demo extra into a new
virtual environment outside the repository, `guichet init` starts a caisse folder, and the demo it
writes serves a complete registration with nothing from the source tree.

Slow (a virtual environment and its dependencies, about a minute): it runs once per session."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from guichet.plugins.demo_mailbox.mailbox import list_mailbox
from tests.ops.serving import free_port

ROOT = Path(__file__).resolve().parent.parent
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
CODE = re.compile(r"\b(\d{6})\b")
# the fixed demo holder the demo registry always has (docs/registry.md)
JULIEN = {
    "nir": "1850578006084",
    "last_name": "LEFEBVRE",
    "first_name": "Julien",
    "birth_date": "14/05/1985",
    "vitale": "2345678901",
}


def run(*args: str | Path, cwd: Path, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {
        key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV", "GUICHET_CONFIG")
    }
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, args))} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        )
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel and its demo extra; returns its bin folder."""
    where = tmp_path_factory.mktemp("wheel")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", where / "dist", ROOT, cwd=where)
    [wheel] = (where / "dist").glob("guichet_auth-*.whl")
    run(sys.executable, "-m", "venv", where / "venv", cwd=where)
    bin_dir = where / "venv" / "bin"
    run(
        bin_dir / "python",
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "-c",
        ROOT / "constraints.txt",
        f"{wheel}[demo]",
        cwd=where,
    )
    return bin_dir


def test_the_wheel_carries_its_metadata_and_one_version(installed: Path, tmp_path: Path) -> None:
    from importlib.metadata import version

    shown = run(installed / "guichet", "--version", cwd=tmp_path).stdout
    assert version("guichet-auth") in shown
    metadata = run(
        installed / "python",
        "-c",
        "from importlib.metadata import metadata; m = metadata('guichet-auth'); "
        "print(m['License-Expression']); print(m.get_all('Classifier')); "
        "print(m.get_all('Provides-Extra'))",
        cwd=tmp_path,
    ).stdout
    assert metadata.splitlines()[0] == "MIT"
    assert "Programming Language :: Python :: 3.11" in metadata
    for extra in ("demo", "postgres", "redis"):
        assert f"'{extra}'" in metadata


def test_init_then_the_demo_serves_a_registration_from_the_wheel_alone(installed: Path, tmp_path: Path) -> None:
    site = tmp_path / "caisse"
    out = run(installed / "guichet", "init", site, cwd=tmp_path).stdout
    assert (site / "caisse.toml").is_file() and (site / "demo.toml").is_file()
    assert (site / "secret_key").stat().st_mode & 0o077 == 0, "the secret key is readable by others"
    assert "guichet serve --config" in out
    again = run(installed / "guichet", "init", site, cwd=tmp_path, check=False)
    assert again.returncode == 1 and "nothing was written" in again.stderr
    check = run(installed / "guichet", "config", "check", "--config", site / "caisse.toml", cwd=tmp_path)
    assert "Ready to serve: yes" in check.stdout
    # PostgreSQL and Redis are extras: a config that needs one says which, before anything starts
    pg = site / "pg.toml"
    pg.write_text(
        (site / "caisse.toml")
        .read_text()
        .replace('url = "sqlite:///var/guichet.sqlite"', 'url = "postgresql://guichet@127.0.0.1/guichet"')
    )
    refused = run(installed / "guichet", "config", "check", "--config", pg, cwd=tmp_path, check=False)
    assert refused.returncode == 1 and "pip install 'guichet-auth[postgres]'" in refused.stdout

    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    env = {
        key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV", "GUICHET_CONFIG")
    }
    server = subprocess.Popen(
        [str(installed / "guichet"), "serve", "--config", str(site / "demo.toml"), "--port", str(port)],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                if httpx.get(f"{base}/sante/pret", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(0.2)
        with httpx.Client(base_url=base, follow_redirects=False, timeout=30) as browser:
            token = CSRF.search(browser.get("/inscription/statut").text).group(1)  # type: ignore[union-attr]
            email = "julien.wheel@demo.invalid"
            steps = [
                ("statut", {"status": "particulier"}),
                ("identifiant", {"identifier": JULIEN["nir"]}),
                (
                    "coordonnees",
                    {
                        "last_name": JULIEN["last_name"],
                        "first_name": JULIEN["first_name"],
                        "birth_date": JULIEN["birth_date"],
                        "email": email,
                        "mobile": "",
                    },
                ),
                ("question", {"question": "vitale", "answer-vitale": JULIEN["vitale"]}),
                ("canal", {"channel": "email"}),
            ]
            for step, form in steps:
                r = browser.post(f"/inscription/{step}", data={**form, "csrf_token": token})
                assert r.status_code == 303, f"{step}: {r.status_code} {r.text[:2000]}"
            token = CSRF.search(browser.get("/inscription/code").text).group(1)  # type: ignore[union-attr]
            code = ""
            for _ in range(150):
                mails = [m for m in list_mailbox(site / "var" / "demo-mailbox") if m.kind == "email" and email in m.to]
                if mails and (found := CODE.search(mails[0].text)):
                    code = found.group(1)
                    break
                time.sleep(0.2)
            assert code, "no code reached the demo mailbox"
            r = browser.post("/inscription/code", data={"code": code, "csrf_token": token})
            assert r.status_code == 303 and r.headers["location"] == "/inscription/termine", r.text[:2000]
            assert "inscription" in browser.get("/inscription/termine").text.lower()
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
