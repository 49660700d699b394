"""Home, help, health and the demo mailbox."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import Controller, Request, Response, get
from litestar.exceptions import NotFoundException
from litestar.response import File

from web.http import is_htmx, render, services_of

HELP = {
    "identifiant": ("Où trouver mon identifiant ?", "help/identifiant.html"),
    "numero-securite-sociale": ("Je ne connais pas mon numéro de Sécurité Sociale", "help/nir.html"),
}


class PagesController(Controller):
    path = "/"

    @get("/")
    async def home(self, request: Request[Any, Any, Any]) -> Any:
        caisse = services_of(request).config.caisse.name
        return render(request, "pages/home.html", {}, title=f"Mon espace privé — {caisse}")

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
        ready = await services_of(request).database.ping()
        return Response({"status": "ok" if ready else "database unavailable"}, status_code=200 if ready else 503)

    @get("/demo/boite-aux-lettres")
    async def mailbox(self, request: Request[Any, Any, Any]) -> Any:
        config = services_of(request).config
        if not config.demo.mailbox:
            raise NotFoundException()
        from core.demo_mailbox import list_mailbox

        items = list_mailbox(config.path(config.demo.mailbox_dir), _spool_dir(request))
        return render(request, "pages/mailbox.html", {"items": items},
                      title=f"Boîte aux lettres de démonstration — {config.caisse.name}")

    @get("/demo/lettres/{name:str}")
    async def letter(self, request: Request[Any, Any, Any], name: str) -> File:
        config = services_of(request).config
        if not config.demo.mailbox or not name.endswith(".pdf") or "/" in name or name.startswith("."):
            raise NotFoundException()
        path = _spool_dir(request) / name
        if not path.is_file():
            raise NotFoundException()
        return File(path=path, filename=name, media_type="application/pdf", content_disposition_type="inline")


def _spool_dir(request: Request[Any, Any, Any]) -> Path:
    config = services_of(request).config
    spool = config.plugin_settings("delivery_postal").get("spool_dir", config.server.spool_dir)
    return config.path(str(spool))
