"""A person at a browser, going through guichet's pages: checks after every step, shared by the tests
and scripts/screenshots.py.

``Browse`` wraps a Playwright page. ``act`` clicks or presses, waits for the next state and runs the
checks of every state: axe-core (WCAG 2.1 A/AA), no CSP violation, no horizontal scroll, the title,
``lang="fr"``, touch targets; with JavaScript, whether htmx swapped only ``#step`` (a window marker
survives) and where the focus went. The journeys below (register, log in, ...) are plain functions.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from playwright.sync_api import Locator, Page, expect

from tests.browser.support import LiveServer, Person, code_in, password_in

AXE_OPTIONS = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}
CSP_WORDS = ("Content Security Policy", "Content-Security-Policy", "Refused to")
# records CSP violations from the first script on, before htmx or guichet.js run
CSP_LISTENER = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', function (e) {
  window.__cspViolations.push(e.violatedDirective + ' ' + (e.blockedURI || 'inline'));
});
"""
AXE_DONE: set[tuple[str, bool, str]] = set()
# what an action must do to the page with JavaScript: see ``Browse.act``
Swap = bool | Literal["body"] | None
_axe_script = ""


def run_axe(page: Page) -> list[dict[str, Any]]:
    """axe-core's WCAG 2.1 A/AA violations on the page (axe is injected once per document)."""
    global _axe_script
    if not _axe_script:
        from axe_playwright_python.sync_playwright import Axe

        _axe_script = Axe().axe_script
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(_axe_script)
    result = page.evaluate("options => axe.run(document, options)", AXE_OPTIONS)
    return list(result["violations"])


class A11yFailure(AssertionError):
    pass


@dataclass
class Browse:
    """One person's browser tab on a live server."""

    page: Page
    server: LiveServer
    js: bool
    inspector: Page | None = None  # a JS-enabled tab that runs axe on the JS-off pages' HTML
    checks: bool = True
    on_state: Callable[["Browse", str], None] | None = None  # screenshots
    states: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    _marker: str = ""

    def __post_init__(self) -> None:
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))
        if self.js:
            self.page.add_init_script(CSP_LISTENER)

    # --- moving -------------------------------------------------------------------------------------

    @property
    def caisse(self) -> str:
        return self.server.caisse_name

    def goto(self, path: str, state: str, *, h1: str | None = None) -> None:
        self.page.goto(self.server.url + path)
        self._arrived(state, h1=h1, swap=False)

    def act(
        self,
        action: Callable[[], Any] | Locator | str,
        state: str,
        *,
        h1: str | None = None,
        swap: Swap = None,
        error: bool = False,
        focus: bool = True,
    ) -> None:
        """Do ``action`` (a click on a locator or selector, or any callable), then check the new state.

        ``swap``: True when htmx must replace only #step (the marker survives), "body" when htmx must
        replace the whole body in place (the window's marker survives, the banner's does not), False
        when the page must be a new one; None to accept either. Without JavaScript every action loads
        a page. ``focus=False`` when htmx swaps something else than #step (the focus then stays put).
        """
        if self.js:
            self._marker = secrets.token_hex(4)
            self.page.evaluate(
                f"window.__guichetMarker = '{self._marker}'; "
                f"var banner = document.querySelector('header.banner'); if (banner) banner.dataset.marker = '{self._marker}'"
            )
        if isinstance(action, str):
            self.page.locator(action).click()
        elif isinstance(action, Locator):
            action.click()
        else:
            action()
        self._arrived(state, h1=h1, swap=swap, error=error, focus=focus)

    def click_button(self, name: str, state: str, *, exact: bool = True, **kwargs: Any) -> None:
        """Click the first button named ``name`` (the banner's "Se déconnecter" comes first)."""
        self.act(self.page.get_by_role("button", name=name, exact=exact).first, state, **kwargs)

    def _arrived(self, state: str, *, h1: str | None, swap: Swap, error: bool = False, focus: bool = True) -> None:
        page = self.page
        if h1 is not None:
            expect(page.locator("h1")).to_have_text(h1, timeout=10_000)
        if error:
            expect(page.locator(".alert a").first).to_be_visible(timeout=10_000)
        self.settle()
        swapped = False
        if self.js and self._marker:
            swapped = page.evaluate(f"window.__guichetMarker === '{self._marker}'")
            banner_kept = page.evaluate(
                f"(document.querySelector('header.banner') || {{dataset: {{}}}}).dataset.marker === '{self._marker}'"
            )
            self._marker = ""
            if swap is True:
                assert swapped, f"{state}: the page was reloaded, htmx should have swapped #step only"
            elif swap == "body":
                assert swapped, f"{state}: the page was reloaded, htmx should have swapped the body in place"
                assert not banner_kept, f"{state}: the banner stayed, htmx should have swapped the whole body"
                expect(page).to_have_url(re.compile(re.escape(self.server.url) + r"/espace-prive$"))
            elif swap is False:
                assert not swapped, f"{state}: expected a new page"
        self.states.append(state)
        if self.checks:
            self.check_state(state, swapped=swapped and focus, error=error)
        if self.on_state:
            self.on_state(self, state)

    def settle(self) -> None:
        if self.js:
            self.page.wait_for_function(
                "() => document.readyState === 'complete' && window.htmx !== undefined && "
                "!document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling')",
                timeout=10_000,
            )
        else:
            self.page.wait_for_load_state("load")

    # --- the checks of every state --------------------------------------------------------------------

    def check_state(self, state: str, *, swapped: bool, error: bool) -> None:
        page = self.page
        title = page.title()
        # the demo mailbox is demo tooling, not a page of Mon espace privé
        ending = (
            f" — {self.caisse}" if page.url.endswith("/demo/boite-aux-lettres") else f"Mon espace privé — {self.caisse}"
        )
        assert title.endswith(ending), f"{state}: title {title!r}"
        facts = page.evaluate("""() => {
          const h1 = document.querySelector('h1');
          const progress = document.querySelector('#step .progress');
          return {lang: document.documentElement.lang, h1s: document.querySelectorAll('h1').length,
                  h1: h1 ? h1.textContent.trim() : '', progress: progress ? progress.textContent.trim() : '',
                  width: document.documentElement.scrollWidth, viewport: window.innerWidth,
                  steps: document.querySelectorAll('#step').length,
                  csp: window.__cspViolations || []};
        }""")
        assert facts["lang"] == "fr", f"{state}: <html lang> is {facts['lang']!r}"
        assert facts["h1s"] == 1 and facts["h1"], f"{state}: {facts['h1s']} h1"
        assert facts["steps"] == 1, f"{state}: {facts['steps']} #step"
        if facts["progress"]:
            expected = f"{facts['progress']} — {facts['h1']} — Mon espace privé — {self.caisse}"
            assert title == expected, f"{state}: title {title!r}, expected {expected!r}"
        assert facts["width"] <= facts["viewport"], (
            f"{state}: horizontal scroll at {facts['viewport']} px (content {facts['width']} px wide)"
        )
        assert not facts["csp"], f"{state}: CSP violations {facts['csp']}"
        bad = [line for line in self.console if any(word in line for word in CSP_WORDS) or line.startswith("pageerror")]
        assert not bad, f"{state}: console {bad}"
        small = page.evaluate("""() => [...document.querySelectorAll(
            'button, .button, input:not([type=hidden]):not([type=radio]):not([type=checkbox]), a.edit')]
          .filter(e => e.offsetParent !== null)
          .filter(e => { const r = e.getBoundingClientRect(); return r.height < 44 || r.width < 44; })
          .map(e => e.outerHTML.slice(0, 80))""")
        assert not small, f"{state}: touch targets under 44 px: {small}"
        if error:
            self.check_errors(state)
        if swapped:
            self.check_focus(state, error=error)
        self.run_axe(state)

    def check_focus(self, state: str, *, error: bool) -> None:
        """After an htmx swap the focus is on the new step's heading, or on the error summary."""
        where = (
            "() => document.activeElement.closest('.alert') !== null"
            if error
            else "() => document.activeElement && document.activeElement.id === 'step-title'"
        )
        try:
            self.page.wait_for_function(where, timeout=3_000)
        except Exception:
            active = self.page.evaluate("document.activeElement ? document.activeElement.outerHTML.slice(0, 120) : ''")
            raise AssertionError(f"{state}: focus is on {active!r} after the swap") from None

    def check_errors(self, state: str) -> None:
        """Errors are in a live region, each tied to its field, which keeps what was typed."""
        page = self.page
        summary = page.locator(".alert")
        assert summary.get_attribute("role") == "alert", f"{state}: the error summary is not role=alert"
        for link in summary.locator("a").all():
            target = (link.get_attribute("href") or "")[1:]
            field = page.locator(f"[id='{target}']")
            assert field.count() == 1, f"{state}: the summary links to #{target}, which is not on the page"
            described = (field.get_attribute("aria-describedby") or "").split()
            group = page.locator(f"fieldset:has([id='{target}'])")
            if group.count():
                described += (group.first.get_attribute("aria-describedby") or "").split()
            messages = [page.locator(f"[id='{d}']").inner_text() for d in described if d.endswith("-error")]
            assert messages, f"{state}: #{target} is not tied to its error (aria-describedby)"
            assert link.inner_text().strip() in " ".join(messages), f"{state}: summary and field disagree"

    def run_axe(self, state: str) -> None:
        """axe-core on this state, once per state name, mode and caisse (the same template again is skipped)."""
        key = (state, self.js, self.caisse)
        if key in AXE_DONE:
            return
        if self.js:
            violations = run_axe(self.page)
        else:
            # axe needs JavaScript: run it on this page's HTML (scripts removed) in a JS-enabled tab
            assert self.inspector is not None, "JS-off checks need an inspector page"
            html = re.sub(r"<script\b[^>]*>.*?</script>", "", self.page.content(), flags=re.S | re.I)
            url = self.page.url

            def handler(route: Any) -> None:
                route.fulfill(status=200, body=html, content_type="text/html; charset=utf-8")

            def matcher(u: str) -> bool:
                return u == url

            self.inspector.route(matcher, handler)
            try:
                self.inspector.set_viewport_size(self.page.viewport_size or {"width": 1280, "height": 800})
                self.inspector.goto(url)
                violations = run_axe(self.inspector)
            finally:
                self.inspector.unroute(matcher, handler)
        if violations:
            lines = [
                f"{v['id']} ({v['impact']}): {v['help']} — " + ", ".join(str(n["target"]) for n in v["nodes"][:5])
                for v in violations
            ]
            raise A11yFailure(f"{state}: axe found {len(violations)} violation(s):\n  " + "\n  ".join(lines))
        AXE_DONE.add(key)

    # --- reading ---------------------------------------------------------------------------------------

    def field(self, name: str) -> Locator:
        return self.page.locator(f"#f-{name}")

    def fill(self, name: str, value: str) -> None:
        self.field(name).fill(value)

    def mailbox_mark(self) -> set[str]:
        return self.server.mailbox.seen()


# --- journeys ---------------------------------------------------------------------------------------------

CODE_TITLE = "Votre code de sécurité"


def register(
    b: Browse, person: Person, *, channel: str = "email", answer: str | None = None, mistakes: bool = True
) -> str:
    """Register ``person``; return the temporary password as the person receives it (email, SMS or letter).

    ``answer`` replaces the right answer (a wrong one sends the password by post). ``mistakes`` makes
    the person get each step wrong once first, so every error state is checked too.
    """
    page = b.page
    b.goto("/inscription/statut", "inscription-statut", h1="Vous êtes...")
    if mistakes:
        b.click_button("Suivant >", "inscription-statut-erreur", h1="Vous êtes...", swap=True, error=True)
    page.locator(f"input[name=status][value={person.status}]").check()
    b.click_button("Suivant >", "inscription-identifiant", h1="Votre identifiant", swap=True)
    assert page.get_attribute("#f-identifier", "inputmode") == "numeric"
    if mistakes:
        b.fill("identifier", "1 85 05 78 006")
        b.click_button("Suivant >", "inscription-identifiant-erreur", h1="Votre identifiant", swap=True, error=True)
        expect(b.field("identifier")).to_have_value("1 85 05 78 006")
        expect(b.field("identifier")).to_have_attribute("aria-invalid", "true")
    nir = person.nir_with_key
    b.fill("identifier", f"{nir[0]} {nir[1:3]} {nir[3:5]} {nir[5:7]} {nir[7:10]} {nir[10:13]} {nir[13:]}")
    b.click_button("Suivant >", "inscription-coordonnees", h1="Vos coordonnées", swap=True)
    expected = {
        "last_name": "family-name",
        "first_name": "given-name",
        "birth_date": "bday",
        "email": "email",
        "mobile": "tel",
    }
    for name, autocomplete in expected.items():
        assert page.get_attribute(f"#f-{name}", "autocomplete") == autocomplete, name
    assert page.get_attribute("#f-email", "type") == "email" and page.get_attribute("#f-mobile", "type") == "tel"
    b.fill("last_name", person.last_name)
    b.fill("first_name", person.first_name)
    b.fill("birth_date", person.birth_date)
    b.fill("mobile", person.mobile_display)
    if mistakes:
        b.fill("email", person.email.replace("@", " chez "))
        b.click_button("Suivant >", "inscription-coordonnees-erreur", h1="Vos coordonnées", swap=True, error=True)
        expect(b.field("email")).to_have_value(person.email.replace("@", " chez "))
        expect(b.field("last_name")).to_have_value(person.last_name)
    b.fill("email", person.email)
    b.click_button("Suivant >", "inscription-question", h1="Vérification de votre identité", swap=True)
    # each question has its own answer field, shown once its question is chosen (CSS, no script)
    page.locator(f"input[name=question][value={person.question}]").check()
    field = f"answer-{person.question}"
    expect(b.field(field)).to_be_visible()
    assert page.get_attribute(f"#f-{field}", "inputmode") == ("numeric" if person.question == "vitale" else "decimal")
    for other in page.locator("input[name=question]").all():
        kind = other.get_attribute("value")
        if kind not in (person.question, "aucune"):
            expect(page.locator(f"#f-answer-{kind}")).to_be_hidden()
    b.fill(field, person.answer if answer is None else answer)
    mark = b.mailbox_mark()
    if answer is not None:
        b.click_button("Suivant >", "inscription-termine-courrier", h1="Votre inscription est enregistrée", swap=True)
        expect(page.locator("#step")).to_contain_text("par courrier")
        letter = b.server.mailbox.letter_to(
            f"{person.first_name} {person.last_name}", subject="mot de passe", after=mark
        )
        b.server.mailbox.letter_to(f"{person.first_name} {person.last_name}", subject="inscription", after=mark)
        return password_in(b.server.mailbox.letter_text(letter))
    b.click_button("Suivant >", "inscription-canal", h1="Réception du code de sécurité", swap=True)
    page.locator(f"input[name=channel][value={channel}]").check()
    b.click_button("Suivant >", "inscription-code", h1=CODE_TITLE, swap=True)
    assert page.get_attribute("#f-code", "inputmode") == "numeric"
    assert page.get_attribute("#f-code", "autocomplete") == "one-time-code"
    message = (
        b.server.mailbox.email_to(person.email, subject="code de sécurité", after=mark)
        if channel == "email"
        else b.server.mailbox.sms_to(person.mobile, contains="code", after=mark)
    )
    code = code_in(message.text)
    if mistakes:
        b.fill("code", "0" * len(code) if code != "0" * len(code) else "1" * len(code))
        b.click_button("Valider", "inscription-code-erreur", h1=CODE_TITLE, swap=True, error=True)
    b.fill("code", code)
    b.click_button("Valider", "inscription-termine", h1="Votre inscription est enregistrée", swap=True)
    sent = {"email": "par e-mail", "sms": "par SMS"}[channel]
    expect(page.locator("#step")).to_contain_text(f"Un mot de passe temporaire vous a été envoyé {sent}.")
    if channel == "email":
        message = b.server.mailbox.email_to(person.email, subject="mot de passe temporaire", after=mark)
    else:
        message = b.server.mailbox.sms_to(person.mobile, contains="mot de passe temporaire", after=mark)
    b.server.mailbox.letter_to(f"{person.first_name} {person.last_name}", subject="inscription", after=mark)
    return password_in(message.text)


def login_password(
    b: Browse,
    identifier: str,
    password: str,
    *,
    state: str = "connexion",
    mistakes: bool = False,
    expect_h1: str = "Authentification à 2 facteurs",
    method: bool = False,
) -> set[str]:
    """Identifier and password on /connexion; returns the mailbox mark taken just before sending.
    ``method``: the second step is an authenticator's own page (a passkey), not the code page."""
    b.goto("/connexion", state, h1="Je me connecte à Mon espace privé")
    assert b.page.get_attribute("#f-identifier", "autocomplete") == "username"
    assert b.page.get_attribute("#f-identifier", "inputmode") == "numeric"
    assert b.page.get_attribute("#f-password", "autocomplete") == "current-password"
    b.fill("identifier", identifier)
    if mistakes:
        b.fill("password", password + "x")
        b.click_button("Se connecter", f"{state}-erreur", h1="Je me connecte à Mon espace privé", swap=True, error=True)
        expect(b.field("identifier")).to_have_value(identifier)
        expect(b.page.locator(".alert")).to_contain_text("Identifiant ou mot de passe incorrect.")
    b.fill("password", password)
    mark = b.mailbox_mark()
    # with JavaScript the code step comes in the answer to the password (htmx swaps it in); anything
    # else (Mon espace privé from a trusted browser, an authenticator's page) is a new page
    code_step = expect_h1 == "Authentification à 2 facteurs" and not method
    landed: Swap = "body" if expect_h1 == "Mon espace privé" else False  # a trusted browser: no code
    b.click_button("Se connecter", f"{state}-suite", h1=expect_h1, swap=True if code_step else landed)
    return mark


def choose_code_channel(b: Browse, channel: str = "email") -> set[str]:
    """A first login with nothing proven yet (the password came by post): pick where the code goes."""
    page = b.page
    expect(page.locator("legend")).to_have_text("Où souhaitez-vous recevoir votre code de sécurité ?")
    page.get_by_label("par SMS" if channel == "sms" else "par e-mail").check()
    mark = b.mailbox_mark()
    b.click_button("Recevoir le code", f"connexion-code-{channel}", h1="Authentification à 2 facteurs", swap=True)
    expect(page.locator(".notice")).to_contain_text("Un code de sécurité vient de vous être envoyé.")
    return mark


def login_code(
    b: Browse,
    person: Person,
    mark: set[str],
    *,
    channel: str = "email",
    trust: bool = False,
    next_h1: str = "Mon espace privé",
    state: str = "connexion-code",
) -> None:
    """The second factor: the code read from the mailbox."""
    message = (
        b.server.mailbox.email_to(person.email, subject="code", after=mark)
        if channel == "email"
        else b.server.mailbox.sms_to(person.mobile, contains="code", after=mark)
    )
    b.fill("code", code_in(message.text))
    if trust:
        b.page.locator("#f-trust").check()
    # with JavaScript a login done lands in Mon espace privé in the answer to the code (the body swapped)
    b.click_button("Valider", state, h1=next_h1, swap="body" if next_h1 == "Mon espace privé" else False)


def personalise(
    b: Browse, new_password: str, *, current: str | None = None, meter: bool | None = None, mistakes: bool = True
) -> None:
    """The forced "Changement de votre mot de passe" (or Mon compte's): meter, errors, then success."""
    page = b.page
    forced = current is None
    h1 = "Changement de votre mot de passe" if forced else "Modifier mon mot de passe"
    for name in ("new_password", "confirm_password"):
        assert page.get_attribute(f"#f-{name}", "autocomplete") == "new-password"
    if meter if meter is not None else b.js:
        meter_box = page.locator("#meter")
        b.field("new_password").press_sequentially("abc", delay=20)
        expect(meter_box.locator(".verdict")).to_have_text("faible", timeout=5_000)
        b.states.append("mot-de-passe-faible")
        if b.on_state:
            b.on_state(b, "mot-de-passe-faible")
        b.field("new_password").press_sequentially("-Vert-Galet", delay=20)
        expect(meter_box.locator(".verdict")).not_to_have_text("faible", timeout=5_000)
        b.field("new_password").fill("")
        b.field("new_password").press_sequentially(new_password, delay=10)
        expect(meter_box.locator(".verdict")).to_have_text("fort", timeout=5_000)
        b.settle()
        if b.checks:
            b.run_axe("mot-de-passe-fort")
        if b.on_state:
            b.on_state(b, "mot-de-passe-fort")
    if mistakes:
        if current is not None:
            b.fill("current_password", current)
        b.fill("new_password", new_password)
        b.fill("confirm_password", new_password + "?")
        b.click_button("Suivant >", "mot-de-passe-erreur", h1=h1, swap=True, error=True)
    if current is not None:
        b.fill("current_password", current)
    b.fill("new_password", new_password)
    b.fill("confirm_password", new_password)
    b.click_button("Suivant >", "mot-de-passe-modifie", h1="Confirmation", swap=False)
    expect(page.locator("#step")).to_contain_text("Votre mot de passe a bien été modifié.")


def confirm_contacts(
    b: Browse, person: Person, *, edit_mobile: str | None = None, password: str = "", mistakes: bool = True
) -> None:
    """ "Confirmation de vos coordonnées": optionally change the mobile with ✎ (the current password, then a
    code by SMS), then confirm."""
    page = b.page
    h1 = "Confirmation de vos coordonnées"
    if edit_mobile:
        edit = page.get_by_role("link", name="Modifier : votre numéro de téléphone portable est")
        b.act(edit, "coordonnees-modifier", h1=h1, swap=True)
        if mistakes:
            b.fill("value", "12 34")
            b.click_button("Enregistrer", "coordonnees-modifier-erreur", h1=h1, swap=True, error=True)
            expect(b.field("value")).to_have_value("12 34")
        b.fill("value", edit_mobile)
        b.fill("current_password", password)
        mark = b.mailbox_mark()
        b.click_button("Enregistrer", "coordonnees-code", h1="Vérification de votre nouvelle coordonnée", swap=True)
        sms = b.server.mailbox.sms_to(edit_mobile, contains="code", after=mark)
        b.fill("code", code_in(sms.text))
        b.click_button("Valider", "coordonnees-modifiees", h1=h1, swap=True)
        expect(page.locator(".notice")).to_contain_text("Votre coordonnée a été vérifiée et enregistrée.")
        digits = re.sub(r"\D", "", edit_mobile)[-9:]
        assert digits in re.sub(r"\D", "", page.locator("#contact-mobile").inner_text())
    b.click_button("Je confirme mes coordonnées", "espace-prive", h1="Mon espace privé", swap=False)
    expect(page.locator("#step")).to_contain_text(f"Bonjour {person.first_name} {person.last_name}")
