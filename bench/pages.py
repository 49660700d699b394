"""Page weight: every step page as a browser with an empty cache fetches it (gzip), HTML plus every CSS
and JS file it references, and the htmx fragment that replaces #step when JavaScript is on.

    .venv/bin/python bench/pages.py            # prints the table and appends it to docs/benchmarks.md
    .venv/bin/python bench/pages.py --no-write

Starts the demo server (config/demo.toml derived into a temporary folder, as tests/browser does) and
walks the flows with plain form POSTs: registration, login with the email code, personalisation,
contact confirmation, Mon compte and the forgotten password. Budget: a full step page, everything
included, under 40 KB compressed.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import common  # noqa: E402
import httpx  # noqa: E402

from tests.browser.support import HttpCitizen, LiveServer, People, code_in, new_password, password_in, start_server  # noqa: E402

BUDGET = 40 * 1024
RESULTS = ROOT / "docs" / "benchmarks.md"
SECTION = "## Page weight"
ASSET_RE = re.compile(r'<(?:link[^>]+rel="stylesheet"[^>]+href|script[^>]+src)="([^"]+)"')


def n(value: int) -> str:
    return f"{value:,}".replace(",", "\u202f")


def _header_bytes(response: httpx.Response) -> int:
    """The response's status line and headers as sent (HTTP/1.1)."""
    return (
        len(f"HTTP/1.1 {response.status_code} {response.reason_phrase}\r\n")
        + sum(len(k) + len(v) + 4 for k, v in response.headers.raw)
        + 2
    )


class Scale:
    """Weighs full pages (HTML + assets, empty cache) and htmx fragments."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.rows: list[dict[str, Any]] = []

    def weigh(self, citizen: HttpCitizen, name: str, *, fragment: bool = True) -> None:
        path = str(citizen.last.url).split(self.server.url, 1)[1]
        html = citizen.client.get(path)
        assert html.status_code == 200, f"{path}: {html.status_code}"
        requests, wire, compressed, raw = 1, _header_bytes(html), html.num_bytes_downloaded, len(html.content)
        wire += html.num_bytes_downloaded
        with httpx.Client(base_url=self.server.url, headers={"Accept-Encoding": "gzip"}) as cold:
            for asset in ASSET_RE.findall(html.text):
                response = cold.get(asset)
                assert response.status_code == 200, asset
                requests += 1
                compressed += response.num_bytes_downloaded
                raw += len(response.content)
                wire += _header_bytes(response) + response.num_bytes_downloaded
        row = {
            "page": name,
            "path": path,
            "requests": requests,
            "compressed": compressed,
            "raw": raw,
            "wire": wire,
            "html": html.num_bytes_downloaded,
            "fragment": None,
        }
        if fragment:
            partial = citizen.client.get(path, headers={"HX-Request": "true"})
            row["fragment"] = partial.num_bytes_downloaded
        self.rows.append(row)

    def table(self) -> str:
        lines = [
            "| page | path | requests | compressed | raw | on the wire (with headers) | HTML alone | htmx fragment |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in self.rows:
            fragment = f"{n(r['fragment'])} B" if r["fragment"] is not None else "—"
            lines.append(
                f"| {r['page']} | `{r['path']}` | {r['requests']} | {n(r['compressed'])} B | {n(r['raw'])} B | "
                f"{n(r['wire'])} B | {n(r['html'])} B | {fragment} |"
            )
        return "\n".join(lines)


def walk(server: LiveServer, scale: Scale) -> None:
    """Every step page, in the order a person meets them."""
    people = People()
    person = people.take("particulier_vitale")
    mailbox = server.mailbox
    c = HttpCitizen(server)
    c.get("/")
    scale.weigh(c, "Accueil", fragment=False)
    c.get("/inscription/statut")
    scale.weigh(c, "Inscription 1/7 : Vous êtes...")
    c.post("/inscription/statut", {"status": person.status})
    scale.weigh(c, "Inscription 2/7 : Votre identifiant")
    c.post("/inscription/identifiant", {"identifier": person.nir_with_key})
    scale.weigh(c, "Inscription 3/7 : Vos coordonnées")
    c.post(
        "/inscription/coordonnees",
        {
            "last_name": person.last_name,
            "first_name": person.first_name,
            "birth_date": person.birth_date,
            "email": person.email,
            "mobile": person.mobile_display,
        },
    )
    scale.weigh(c, "Inscription 4/7 : Vérification de votre identité")
    c.post("/inscription/question", {"question": person.question, "answer": person.answer})
    scale.weigh(c, "Inscription 5/7 : Réception du code")
    mark = mailbox.seen()
    c.post("/inscription/canal", {"channel": "email"})
    scale.weigh(c, "Inscription 6/7 : Votre code de sécurité")
    c.post("/inscription/code", {"code": code_in(mailbox.email_to(person.email, subject="code", after=mark).text)})
    scale.weigh(c, "Inscription 7/7 : Inscription enregistrée")
    temporary = mailbox.email_to(person.email, subject="mot de passe temporaire", after=mark).text
    c.get("/connexion")
    scale.weigh(c, "Connexion")
    mark = mailbox.seen()
    c.post("/connexion", {"identifier": person.nir, "password": password_in(temporary)})
    scale.weigh(c, "Connexion : code de sécurité")
    c.post("/connexion/code", {"code": code_in(mailbox.email_to(person.email, subject="code", after=mark).text)})
    scale.weigh(c, "Changement de votre mot de passe")
    password = new_password(person)
    c.personalise(password)
    scale.weigh(c, "Mot de passe modifié")
    c.get("/confirmation-coordonnees")
    scale.weigh(c, "Confirmation de vos coordonnées")
    c.confirm_contacts()
    scale.weigh(c, "Mon espace privé")
    c.get("/mon-compte")
    scale.weigh(c, "Mon compte")
    c.get("/mon-compte/mot-de-passe")
    scale.weigh(c, "Modifier mon mot de passe")
    c.get("/mon-compte/email")
    scale.weigh(c, "Modifier mon email")
    c.logout()
    c.get("/mot-de-passe-oublie/identifiant")
    scale.weigh(c, "Mot de passe oublié 1/4 : identifiant")
    c.post("/mot-de-passe-oublie/identifiant", {"identifier": person.nir_with_key})
    scale.weigh(c, "Mot de passe oublié 2/4 : canal")
    mark = mailbox.seen()
    c.post("/mot-de-passe-oublie/canal", {"channel": "email"})
    scale.weigh(c, "Mot de passe oublié 3/4 : code")
    c.post(
        "/mot-de-passe-oublie/code", {"code": code_in(mailbox.email_to(person.email, subject="code", after=mark).text)}
    )
    scale.weigh(c, "Mot de passe oublié 4/4 : confirmation")
    c.close()


def append(text: str) -> None:
    """Append under "## Page weight" (created at the end if missing); re-read first: others write here too."""
    existing = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmarks\n"
    if SECTION not in existing:
        intro = (
            f"{SECTION}\n\nEvery step page as a browser with an empty cache fetches it with gzip "
            "(bench/pages.py): the HTML and every CSS and JS file it references. Budget: under 40 KB "
            "compressed, everything included. The htmx fragment is what replaces #step when JavaScript "
            "is on.\n"
        )
        # before the section the other benches append to at the end of the file, so theirs stay last
        appended = re.search(r"^## Bench results", existing, re.M)
        if appended:
            existing = existing[: appended.start()] + intro + "\n" + existing[appended.start() :]
        else:
            existing = existing.rstrip("\n") + "\n\n" + intro
    start = existing.index(SECTION) + len(SECTION)
    following = re.search(r"^## ", existing[start:], re.M)
    end = start + following.start() if following else len(existing)
    section = existing[:end].rstrip("\n") + "\n\n" + text.strip() + "\n"
    rest = existing[end:]
    RESULTS.write_text(section + ("\n" + rest if rest else ""), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print only; do not append to docs/benchmarks.md")
    args = parser.parse_args(argv)
    facts = common.machine_facts()
    with tempfile.TemporaryDirectory(prefix="guichet-pages-") as tmp:
        server = start_server("demo", Path(tmp) / "demo")
        try:
            scale = Scale(server)
            walk(server, scale)
        finally:
            server.stop()
    heaviest = max(scale.rows, key=lambda r: r["compressed"])
    over = [r["page"] for r in scale.rows if r["compressed"] >= BUDGET]
    summary = (
        f"{len(scale.rows)} pages; heaviest: {heaviest['page']}, **{n(heaviest['compressed'])} B compressed**"
        f" in {heaviest['requests']} requests ({n(heaviest['raw'])} B raw); budget 40 KB: "
        + ("all under" if not over else f"OVER for {', '.join(over)}")
    )
    block = (
        f"- {facts['date']}, `{common.command_line()}`: {summary}. Machine: nproc {facts['nproc']}, "
        f"{facts['cpu']}, Python {facts['python']}, Linux {facts['kernel']}, load average "
        f"{facts['load average (1/5/15 min) at start']} at start.\n\n{scale.table()}\n"
    )
    print(block)
    if not args.no_write:
        append(block)
        print(f"appended to {RESULTS.relative_to(ROOT)} under {SECTION!r}")
    return 1 if over else 0


if __name__ == "__main__":
    raise SystemExit(main())
