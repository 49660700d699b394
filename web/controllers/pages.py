"""Home, help, health and the demo mailbox."""
from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get
from litestar.exceptions import NotFoundException
from litestar.response import File

from guichet.core.availability import RETRY_AFTER_SECONDS, readiness
from guichet.web.http import is_htmx, render, services_of

HELP = {
    "identifiant": ("Où trouver mon identifiant ?", "help/identifiant.html"),
    "numero-securite-sociale": ("Je ne connais pas mon numéro de Sécurité Sociale", "help/nir.html"),
}


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
        return render(request, "pages/help.html", {"heading": heading, "help_template": f"components/{template}"},
                      title=f"{heading} — Mon espace privé — {caisse}")

    @get("/sante", sync_to_thread=False)
    def liveness(self) -> dict[str, str]:
        return {"status": "ok"}

    @get("/sante/pret")
    async def readiness(self, request: Request[Any, Any, Any]) -> Response[dict[str, str]]:
        """200 when every store the app needs takes its probe (a database write, Redis PING), else 503."""
        states = await readiness(services_of(request))
        ready = all(state == "ok" for state in states.values())
        return Response({"status": "ok" if ready else "unavailable", **states}, status_code=200 if ready else 503,
                        headers={} if ready else {"retry-after": str(RETRY_AFTER_SECONDS)})

    @get("/demo/boite-aux-lettres")
    async def mailbox(self, request: Request[Any, Any, Any]) -> Any:
        config = services_of(request).config
        if not config.demo.mailbox:
            raise NotFoundException()
        from guichet.core.demo_mailbox import list_mailbox, mailbox_dirs

        items = list_mailbox(*mailbox_dirs(config))
        return render(request, "pages/mailbox.html", {"items": items},
                      title=f"Boîte aux lettres de démonstration — {config.caisse.name}")

    @get("/demo/emails/{item_id:str}")
    async def email(self, request: Request[Any, Any, Any], item_id: str) -> Response[str]:
        """An email's HTML body as sent, in a sandbox: no script, no form, no request anywhere."""
        config = services_of(request).config
        if not config.demo.mailbox:
            raise NotFoundException()
        from guichet.core.demo_mailbox import list_mailbox, mailbox_dirs

        found = next((i for i in list_mailbox(*mailbox_dirs(config)) if i.kind == "email" and i.id == item_id), None)
        if found is None or not found.html:
            raise NotFoundException()
        return Response(content=found.html, media_type="text/html; charset=utf-8", headers={
            "content-security-policy": "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:"})

    @get("/demo/lettres/{name:str}")
    async def letter(self, request: Request[Any, Any, Any], name: str) -> File:
        config = services_of(request).config
        if not config.demo.mailbox:
            raise NotFoundException()
        from guichet.core.demo_mailbox import letter_path, mailbox_dirs

        path = letter_path(mailbox_dirs(config)[1], name)
        if path is None:
            raise NotFoundException()
        return File(path=path, filename=name, media_type="application/pdf", content_disposition_type="inline")
