"""Home, help, health and the demo mailbox."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get
from litestar.exceptions import NotFoundException
from litestar.response import File

from guichet.core.availability import RETRY_AFTER_SECONDS, readiness
from guichet.core.config import CaisseConfig
from guichet.web.http import is_htmx, render, services_of

HELP = {
    "identifiant": ("Où trouver mon identifiant ?", "help/identifiant.html"),
    "numero-securite-sociale": ("Je ne connais pas mon numéro de Sécurité Sociale", "help/nir.html"),
}


def _title(config: CaisseConfig, heading: str) -> str:
    return f"{heading} — Mon espace privé — {config.caisse.name}"


def _publisher(config: CaisseConfig) -> tuple[str, ...]:
    """The publisher's name and address: the config's, or the caisse's own letterhead."""
    return config.legal.notice.publisher or config.caisse.postal_address or (config.caisse.name,)


def _fill(text: str, values: dict[str, Any]) -> str:
    """A retention period with the deployment's own figures ("{trusted_browser_days} jours")."""
    for key, value in values.items():
        text = text.replace("{" + key + "}", str(value))
    return text


class PagesController(Controller):
    path = "/"

    @get("/")
    async def home(self, request: Request[Any, Any, Any], deconnexion: str | None = None) -> Any:
        caisse = services_of(request).config.caisse.name
        notice = "Vous êtes déconnecté de Mon espace privé." if deconnexion == "faite" else ""
        return render(request, "pages/home.html", {"notice": notice}, title=f"Mon espace privé — {caisse}")

    @get("/aide/{topic:str}")
    async def help(self, request: Request[Any, Any, Any], topic: str) -> Any:
        if topic not in HELP:
            raise NotFoundException()
        heading, template = HELP[topic]
        caisse = services_of(request).config.caisse.name
        # with htmx the help opens in place under the link; without, it is a page of its own
        if is_htmx(request):
            return render(request, f"components/{template}", {"inline": True}, title=heading)
        return render(
            request,
            "pages/help.html",
            {"heading": heading, "help_template": f"components/{template}"},
            title=f"{heading} — Mon espace privé — {caisse}",
        )

    # --- what a public service's site owes its users: accessibility, mentions légales, données personnelles

    @get("/accessibilite")
    async def accessibility(self, request: Request[Any, Any, Any]) -> Any:
        config = services_of(request).config
        return render(
            request,
            "pages/legal/accessibilite.html",
            {
                "legal": config.legal,
                "publisher": _publisher(config)[0],
                "contact_email": config.legal.accessibility.contact_email or config.caisse.assistance.email,
            },
            title=_title(config, "Déclaration d'accessibilité"),
        )

    @get("/mentions-legales")
    async def legal_notice(self, request: Request[Any, Any, Any]) -> Any:
        config = services_of(request).config
        return render(
            request,
            "pages/legal/mentions_legales.html",
            {"legal": config.legal, "publisher_lines": _publisher(config)},
            title=_title(config, "Mentions légales"),
        )

    @get("/donnees-personnelles")
    async def privacy(self, request: Request[Any, Any, Any]) -> Any:
        config = services_of(request).config
        privacy = config.legal.privacy
        values = {
            "trusted_browser_days": config.security.trusted_browser_days,
            "audit_retention": privacy.audit_retention,
        }
        processings = [
            {"data": p.data, "purpose": p.purpose, "basis": p.basis, "retention": _fill(p.retention, values)}
            for p in privacy.processings
        ]
        dpo_address = privacy.dpo_address or (
            (
                config.caisse.postal_address[0],
                "À l'attention du délégué à la protection des données",
                *config.caisse.postal_address[1:],
            )
            if config.caisse.postal_address
            else ()
        )
        return render(
            request,
            "pages/legal/donnees_personnelles.html",
            {
                "legal": config.legal,
                "controller": privacy.controller or config.caisse.name,
                "processings": processings,
                "dpo_address": dpo_address,
            },
            title=_title(config, "Données personnelles"),
        )

    @get("/espace-ferme")
    async def closed(self, request: Request[Any, Any, Any]) -> Any:
        """Where a closed account's holder lands (no longer logged in): what was done and what was kept."""
        config = services_of(request).config
        return render(request, "pages/espace_ferme.html", {}, title=_title(config, "Votre espace privé est fermé"))

    @get("/sante", sync_to_thread=False)
    def liveness(self) -> dict[str, str]:
        return {"status": "ok"}

    @get("/sante/pret")
    async def readiness(self, request: Request[Any, Any, Any]) -> Response[dict[str, str]]:
        """200 when every store the app needs takes its probe (a database write, Redis PING), else 503."""
        states = await readiness(services_of(request))
        ready = all(state == "ok" for state in states.values())
        return Response(
            {"status": "ok" if ready else "unavailable", **states},
            status_code=200 if ready else 503,
            headers={} if ready else {"retry-after": str(RETRY_AFTER_SECONDS)},
        )

    @get("/demo/boite-aux-lettres")
    async def mailbox(self, request: Request[Any, Any, Any]) -> Any:
        config = services_of(request).config
        if not config.demo.mailbox:
            raise NotFoundException()
        found = services_of(request).host.demo_mailbox()
        items = found.items() if found is not None else []
        return render(
            request,
            "pages/mailbox.html",
            {"items": items},
            title=f"Boîte aux lettres de démonstration — {config.caisse.name}",
        )

    @get("/demo/emails/{item_id:str}")
    async def email(self, request: Request[Any, Any, Any], item_id: str) -> Response[str]:
        """An email's HTML body as sent, in a sandbox: no script, no form, no request anywhere."""
        config = services_of(request).config
        if not config.demo.mailbox:
            raise NotFoundException()
        box = services_of(request).host.demo_mailbox()
        found = next((i for i in (box.items() if box else []) if i.kind == "email" and i.id == item_id), None)
        if found is None or not found.html:
            raise NotFoundException()
        return Response(
            content=found.html,
            media_type="text/html",
            headers={
                "content-security-policy": "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:"
            },
        )

    @get("/demo/lettres/{name:str}")
    async def letter(self, request: Request[Any, Any, Any], name: str) -> File:
        config = services_of(request).config
        if not config.demo.mailbox:
            raise NotFoundException()
        box = services_of(request).host.demo_mailbox()
        path = box.letter(name) if box is not None else None
        if path is None:
            raise NotFoundException()
        return File(path=path, filename=name, media_type="application/pdf", content_disposition_type="inline")
