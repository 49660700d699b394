"""Regenerate docs/screenshots/: the main steps at 360x740 (phone) and 1280x800 (desktop).

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots]

Starts the demo server (config/demo.toml, derived into a temporary folder as the browser tests do),
then drives the same journeys as tests/browser with Debian's chromium: registration, login with the
email code, the forced personalisation, the contact confirmation, Mon compte and the forgotten
password; Mes données and closing the account; the logout's confirmation; the accessibility
statement, données personnelles and mentions légales; « Sécurité de connexion » with an authenticator
app and a passkey added (Chromium's virtual authenticator stands for the phone), and the login with a
passkey; plus the login page of MSA Provence Azur, to show a caisse's own colour.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pyotp  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from tests.browser.flows import Browse, confirm_contacts, login_code, login_password, personalise, register  # noqa: E402
from tests.browser.support import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    LiveServer,
    People,
    new_password,
    person_with_account,
    start_server,
)
from tests.browser.test_passkey import At, Phone  # noqa: E402

SIZES = {"mobile": {"width": 360, "height": 740}, "desktop": {"width": 1280, "height": 800}}
# state name in the journeys -> file name (numbered in the order a person meets them)
SHOTS = {
    "accueil": "01-accueil",
    "inscription-statut": "02-inscription-statut",
    "inscription-identifiant-erreur": "03-inscription-identifiant-erreur",
    "inscription-coordonnees": "04-inscription-coordonnees",
    "inscription-question": "05-inscription-question",
    "inscription-canal": "06-inscription-canal",
    "inscription-code": "07-inscription-code",
    "inscription-termine": "08-inscription-termine",
    "connexion": "09-connexion",
    "connexion-suite": "10-connexion-code",
    "mot-de-passe-fort": "11-changement-mot-de-passe",
    "coordonnees": "12-confirmation-coordonnees",
    "mon-compte": "13-mon-compte",
    "oubli-canal": "14-mot-de-passe-oublie-canal",
    "mes-donnees": "16-mes-donnees",
    "fermeture": "17-fermer-mon-espace",
    "deconnexion": "18-deconnexion-confirmee",
    "accessibilite": "19-accessibilite",
    "donnees-personnelles": "20-donnees-personnelles",
    "mentions-legales": "21-mentions-legales",
    "securite-totp": "22-ajout-application",
    "securite-ajout-cle": "23-ajout-cle-d-acces",
    "securite-cle-ajoutee": "24-securite-de-connexion",
    "connexion-cle": "25-connexion-cle-d-acces",
}


def shrink(path: Path) -> None:
    """128 colours are plenty for flat pages: the PNG gets 2 to 3 times smaller (Pillow comes with fpdf2)."""
    try:
        from PIL import Image
    except ImportError:
        return
    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    small.save(path, optimize=True)


def authenticators(browser: Any, server: LiveServer, people: People, shoot: Callable[[Browse, str], None]) -> None:
    """Sécurité de connexion: an authenticator app, then a passkey, then the login with the passkey.
    Passkeys need a domain name: the pages are opened at http://localhost (the demo's RP ID)."""
    server.people = people  # type: ignore[attr-defined]
    person, password = person_with_account(server, "particulier_paiement")
    context = browser.new_context(viewport=SIZES["desktop"], locale="fr-FR")
    b = Browse(page=context.new_page(), server=At(server, "localhost"), js=True, checks=False, on_state=shoot)  # type: ignore[arg-type]
    Phone(b)
    page = b.page
    login_code(b, person, login_password(b, person.nir, password))
    b.goto("/mon-compte/securite/confirmer?suite=/mon-compte/securite/totp/ajouter", "securite-confirmer")
    b.fill("current_password", password)
    b.click_button("Confirmer", "securite-totp", h1="Ajouter une application d'authentification")
    key = page.locator("strong.key").inner_text().replace(" ", "")
    b.fill("label", "Téléphone de Julie")
    b.fill("code", pyotp.TOTP(key).now())
    b.click_button("Terminer", "securite-totp-ajoutee", h1="Sécurité de connexion")
    b.act(page.get_by_role("link", name="> ajouter : clé d'accès"), "securite-ajout-cle", h1="Créer une clé d'accès")
    b.fill("label", "Ordinateur de la maison")
    b.click_button("Créer ma clé d'accès", "securite-cle-ajoutee", h1="Sécurité de connexion")
    b.click_button("Se déconnecter", "deconnexion-cle", swap=False)
    b.goto("/connexion", "connexion-avec-cle")
    b.act(page.get_by_role("link", name="Se connecter avec une clé d'accès"), "connexion-cle")
    b.click_button("Utiliser ma clé d'accès", "connexion-cle-faite", h1="Mon espace privé")
    context.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    taken: list[Path] = []

    def shoot(b: Browse, state: str, name: str | None = None) -> None:
        name = name or SHOTS.get(state)
        if name is None or any(p.stem.startswith(name) for p in taken):
            return
        page = b.page
        for size, viewport in SIZES.items():
            page.set_viewport_size(viewport)
            path = out / f"{name}-{size}.png"
            page.screenshot(path=str(path), full_page=True, animations="disabled", caret="hide")
            shrink(path)
            taken.append(path)
        page.set_viewport_size(SIZES["desktop"])

    with tempfile.TemporaryDirectory(prefix="guichet-shots-") as tmp, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        server = start_server("demo", Path(tmp) / "demo")
        try:
            people = People()
            context = browser.new_context(viewport=SIZES["desktop"], locale="fr-FR")
            b = Browse(page=context.new_page(), server=server, js=True, checks=False, on_state=shoot)
            person = people.take("particulier_vitale")
            b.goto("/", "accueil")
            temporary = register(b, person, channel="email")
            mark = login_password(b, person.nir, temporary)
            login_code(b, person, mark, next_h1="Changement de votre mot de passe")
            password = new_password(person)
            personalise(b, password, mistakes=False)
            b.act(b.page.get_by_role("link", name="Continuer >"), "coordonnees", swap=False)
            confirm_contacts(b, person)
            b.act(b.page.get_by_role("link", name="Mon compte").first, "mon-compte", swap=False)
            b.goto("/mon-compte/mes-donnees", "mes-donnees")
            b.goto("/mon-compte/fermeture", "fermeture")
            b.click_button("Se déconnecter", "deconnexion", swap=False)
            for page in ("accessibilite", "donnees-personnelles", "mentions-legales"):
                b.goto(f"/{page}", page)
            b.goto("/mot-de-passe-oublie/identifiant", "oubli-identifiant")
            b.fill("identifier", person.nir_with_key)
            b.click_button("Suivant >", "oubli-canal", swap=True)
            context.close()
            authenticators(browser, server, people, shoot)
        finally:
            server.stop()
        # a caisse's own colour: MSA Provence Azur's login page
        server = start_server("provence-azur", Path(tmp) / "provence-azur")
        try:
            context = browser.new_context(viewport=SIZES["desktop"], locale="fr-FR")
            b = Browse(page=context.new_page(), server=server, js=True, checks=False)
            b.goto("/connexion", "connexion")
            shoot(b, "connexion", "15-provence-azur-connexion")
            context.close()
        finally:
            server.stop()
        browser.close()
    for path in taken:
        print(f"{path.stat().st_size // 1024:>4} KB  {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
