"""examples/mes-attestations, the example service, against ``guichet serve``: logged in through the
provider (its own checks of the ID token), then behind Debian's nginx with forward auth."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.ops import restart_load
from tests.ops.restart_load import Nginx
from tests.ops.serving import ROOT, Served, free_port
from tests.ops.test_forward_auth import IDENTIFIER, PASSWORD, add_person, last_code, nginx_location

APP = ROOT / "examples" / "mes-attestations" / "app.py"
SECRET = "un-secret-pour-mes-attestations-0123456789"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def caisse(folder: Path, issuer: str, service: str) -> Path:
    path = restart_load.app_config(folder)
    path.write_text(
        path.read_text()
        + f"""
[oidc]
enabled = true
issuer = "{issuer}"
forward_auth = true

[[oidc.clients]]
id = "attestations"
name = "Mes attestations"
start_url = "{service}/"
redirect_uris = ["{service}/retour"]
post_logout_redirect_uris = ["{service}/au-revoir"]
secret = {{ value = "{SECRET}" }}
"""
    )
    return path


def start_example(issuer: str, port: int, log: Path) -> subprocess.Popen[Any]:
    proc = subprocess.Popen(
        [
            sys.executable,
            str(APP),
            "--guichet",
            issuer,
            "--public-url",
            f"http://127.0.0.1:{port}",
            "--port",
            str(port),
        ],
        env={**os.environ, "ATTESTATIONS_SECRET": SECRET},
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the example exited: {log.read_text()}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/au-revoir", timeout=1)
            return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("the example did not start")


async def log_in(browser: httpx.AsyncClient, guichet: str, folder: Path, login_url: str) -> httpx.Response:
    page = await browser.get(login_url)
    retour = page.text.split('name="retour" value="')[1].split('"')[0].replace("&amp;", "&")
    r = await browser.post(
        f"{guichet}/connexion",
        data={
            "identifier": IDENTIFIER,
            "password": PASSWORD,
            "retour": retour,
            "csrf_token": CSRF.search(page.text).group(1),
        },
    )  # type: ignore[union-attr]
    assert r.headers["location"] == "/connexion/code"
    page = await browser.get(f"{guichet}/connexion/code")
    r = await browser.post(
        f"{guichet}/connexion/code",
        data={"code": await last_code(folder), "csrf_token": CSRF.search(page.text).group(1)},
    )  # type: ignore[union-attr]
    assert r.status_code == 303
    return r


async def test_the_example_service_logs_in_through_guichet_and_out() -> None:
    folder = Path(tempfile.mkdtemp(prefix="guichet-example-"))
    guichet_port, app_port = free_port(), free_port()
    guichet, service = f"http://127.0.0.1:{guichet_port}", f"http://127.0.0.1:{app_port}"
    config = caisse(folder, guichet, service)
    await add_person(folder)
    served = Served(config, port=guichet_port).start()
    app = start_example(guichet, app_port, folder / "example.log")
    try:
        async with httpx.AsyncClient(follow_redirects=False, timeout=30) as browser:
            r = await browser.get(f"{service}/")
            assert r.status_code == 303 and r.headers["location"].startswith(f"{guichet}/oidc/autoriser?")
            r = await browser.get(r.headers["location"])
            r = await log_in(browser, guichet, folder, f"{guichet}{r.headers['location']}")
            r = await browser.get(f"{guichet}{r.headers['location']}")  # back to the authorization
            assert r.headers["location"].startswith(f"{service}/retour?code=")
            r = await browser.get(r.headers["location"])
            assert r.status_code == 303, (folder / "example.log").read_text()
            page = await browser.get(f"{service}/")
            assert page.status_code == 200
            assert "Bonjour Julien LEFÈVRE." in page.text and "mot de passe et code de sécurité" in page.text
            # a forged callback is refused by the service
            assert (await browser.get(f"{service}/retour?code=x&state=y&iss={guichet}")).status_code == 400
            # logging out of the service goes through guichet and comes back
            r = await browser.get(f"{service}/deconnexion")
            assert r.headers["location"].startswith(f"{guichet}/oidc/deconnexion?")
            page = await browser.get(r.headers["location"])
            assert "Me déconnecter" in page.text
            r = await browser.post(
                f"{guichet}/oidc/deconnexion",
                data={
                    "target": f"{service}/au-revoir",
                    "client_id": "attestations",
                    "csrf_token": CSRF.search(page.text).group(1),
                },
            )  # type: ignore[union-attr]
            assert r.headers["location"] == f"{service}/au-revoir"
            assert (await browser.get(f"{service}/")).status_code == 303  # logged out of the service too
    finally:
        app.kill()
        app.wait(10)
        served.stop()


async def test_the_example_service_behind_nginx_with_forward_auth() -> None:
    if restart_load.nginx_binary() is None:
        from tests.conftest import service_missing

        service_missing("nginx (apt-get install nginx)")
    folder = Path(tempfile.mkdtemp(prefix="guichet-example-nginx-"))
    guichet_port, app_port = free_port(), free_port()
    nginx = Nginx(guichet_port, upstream="", location=nginx_location(guichet_port, app_port))
    config = caisse(folder, nginx.url, f"http://127.0.0.1:{app_port}")
    await add_person(folder)
    served = Served(config, port=guichet_port).start()
    app = None
    try:
        nginx.start()
        app = start_example(nginx.url, app_port, folder / "example.log")
        async with httpx.AsyncClient(base_url=nginx.url, follow_redirects=False, timeout=30) as browser:
            r = await browser.get("/attestations/mes-droits")
            assert r.status_code == 302
            r = await log_in(browser, nginx.url, folder, r.headers["location"])
            assert r.headers["location"] == "/attestations/mes-droits"
            page = await browser.get("/attestations/mes-droits")
            assert page.status_code == 200 and "Bonjour Julien LEFÈVRE." in page.text, page.text
            # straight to the app, past nginx, with made-up headers: refused by the app's own check
            forged = await browser.get(
                f"http://127.0.0.1:{app_port}/attestations/mes-droits",
                headers={"X-Guichet-Prenom": "Julien", "X-Guichet-Jeton": "faux.jeton.ici"},
            )
            assert forged.status_code == 401
    finally:
        nginx.stop()
        if app is not None:
            app.kill()
            app.wait(10)
        served.stop()
