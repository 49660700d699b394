"""The Litestar application: ``create_app(config)`` builds everything from a caisse config."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import gzip
import hashlib
import logging
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
from litestar import Litestar, Request, Response, get
from litestar.config.compression import CompressionConfig
from litestar.exceptions import HTTPException, NotFoundException
from litestar.plugins import PluginProtocol
from litestar.plugins.core import MsgspecDIPlugin
from litestar.plugins.htmx import HTMXPlugin
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.template.config import TemplateConfig
from markupsafe import Markup, escape
from uvicorn.config import STARTUP_FAILURE

from guichet.core.addresses import AddressSet
from guichet.core.clock import Clock, DatabaseClock, start_synced
from guichet.core.config import CaisseConfig, load_config
from guichet.core.errors import ConfigError
from guichet.core.logs import configure_logging
from guichet.core.plugins import demo_mailbox
from guichet.core.services import Services, build_services
from guichet.web import metrics
from guichet.web.compression import WholeBodyCompression, accepts_gzip
from guichet.web.controllers.account import AccountController
from guichet.web.controllers.login import LoginController, LogoutController
from guichet.web.controllers.pages import PagesController
from guichet.web.controllers.recovery import RecoveryController
from guichet.web.controllers.registration import RegistrationController
from guichet.web.controllers.security import SecurityController
from guichet.web.http import (
    CSP,
    LeaveFor,
    SessionSaver,
    before_request,
    before_send,
    error_handler,
    leave_for_handler,
    public_origin,
)
from guichet.web.oidc import routes as oidc_routes
from guichet.web.oidc.provider import Provider
from guichet.web.oidc.service_calls import ServiceCalls

log = logging.getLogger("guichet.web")
HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
STATIC_FILES = ("htmx-2.0.11.min.js", "guichet.js", "guichet.css")
FORM_BODY_LIMIT = 32 * 1024


class GuichetLitestar(Litestar):
    """Litestar with only the plugins guichet uses.

    Litestar adds its pydantic plugins whenever pydantic can be imported (piccolo requires it) and
    its attrs schema plugin whenever attrs can: guichet's handlers take forms and msgspec Structs
    and publish no OpenAPI schema, so they would serve nothing, and the pydantic ones cost every
    worker ≈ 3 MiB and 60 ms of imports (docs/benchmarks.md, "What was changed for efficiency";
    tests/core/test_worker_imports.py notices a Litestar release that names this hook otherwise).
    """

    @staticmethod
    def _get_default_plugins(plugins: list[PluginProtocol]) -> list[PluginProtocol]:
        plugins.append(MsgspecDIPlugin())
        return plugins


class StaticFile(msgspec.Struct, frozen=True):
    data: bytes
    gzipped: bytes  # made once at start-up: the files never change while the process runs
    media_type: str  # without charset: Litestar adds "; charset=utf-8" to text types


class StaticFiles:
    """Files served under content-hashed names with a year-long cache; the theme is made per caisse."""

    def __init__(self, config: CaisseConfig) -> None:
        self.files: dict[str, StaticFile] = {}
        self.names: dict[str, str] = {}
        for name in STATIC_FILES:
            self._add(name, (STATIC_DIR / name).read_bytes())
        theme = f":root{{--caisse:{config.caisse.colour}}}\n".encode()
        self._add("theme.css", theme)

    def _add(self, name: str, data: bytes) -> None:
        digest = hashlib.sha256(data).hexdigest()[:10]
        stem, _, ext = name.rpartition(".")
        hashed = f"{stem}.{digest}.{ext}"
        media = "text/javascript" if ext == "js" else "text/css"
        self.files[hashed] = StaticFile(data, gzip.compress(data, compresslevel=9, mtime=0), media)
        self.names[name] = f"/static/{hashed}"


@get("/static/{name:str}", sync_to_thread=False, include_in_schema=False)
def static_file(request: Request[Any, Any, Any], name: str) -> Response[bytes]:
    found: StaticFile | None = request.app.state.static.files.get(name)
    if found is None:
        raise NotFoundException()
    headers = {"cache-control": "public, max-age=31536000, immutable", "vary": "Accept-Encoding"}
    if accepts_gzip(request.headers.get("accept-encoding", "")):
        # already compressed: web/compression.py sends a body with a Content-Encoding as it is
        return Response(
            content=found.gzipped, media_type=found.media_type, headers={**headers, "content-encoding": "gzip"}
        )
    return Response(content=found.data, media_type=found.media_type, headers=headers)


@get("/metrics", include_in_schema=False)
async def metrics_endpoint(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Prometheus metrics, for the addresses in [metrics] allowed_clients only (web/metrics.py)."""
    services: Services = request.app.state.services
    peer = request.client.host if request.client else ""
    if not services.config.metrics.enabled or not request.app.state.metrics_clients.allows(
        peer, request.scope.get("headers", ())
    ):
        raise NotFoundException()
    body = await metrics.exposition(services.database, services.now())
    # the exposition format's type already names its charset: set as a header, Litestar adds none
    return Response(content=body, headers={"content-type": metrics.CONTENT_TYPE})


def _no_template_reload(engine: JinjaTemplateEngine) -> None:
    # Jinja otherwise stats every template file on every render (docs/benchmarks.md): restart to see an edit
    engine.engine.auto_reload = False
    engine.engine.filters["email_breaks"] = email_breaks


def email_breaks(address: str | None) -> Markup:
    """An email address that a narrow screen breaks after its @ or before a dot, never inside a word."""
    escaped = escape(address or "")
    return Markup(str(escaped).replace("@", "@<wbr>").replace(".", "<wbr>."))


def create_app(
    config: CaisseConfig | None = None,
    *,
    clock: Clock | None = None,
    services: Services | None = None,
    run_outbox_worker: bool | None = None,
) -> Litestar:
    """The app for one caisse: its plugins, database, sessions and pages."""
    if config is None:
        config = load_config(os.environ.get("GUICHET_CONFIG", "config/demo.toml"))
    demo_sinks = None
    if services is None:
        endpoints = None
        demo_sinks = demo_mailbox(config)  # a plugin (plugins/demo_mailbox), found through its hook
        if demo_sinks is not None:
            endpoints = demo_sinks.endpoints()  # started by the lifespan: only the app that serves runs them
        services = build_services(config, clock=clock, demo=endpoints, extra_plugins=metrics.app_plugins())
    worker_wanted = config.server.outbox_worker if run_outbox_worker is None else run_outbox_worker
    static = StaticFiles(config)
    provider = Provider(services) if config.oidc.enabled else None
    back_channel = oidc_routes.BackChannel()

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if demo_sinks is not None:
            demo_sinks.start()
        await services.database.connect()
        if config.server.mode == "demo":
            await services.database.upgrade()
        await start_synced(services.clock)  # before the first request judges an expiry
        if provider is not None:
            try:
                await provider.ensure_keys()
                await provider.load_stored_clients()
                app.state.csp = oidc_routes.csp(CSP, provider)
            except Exception:  # a store down at start: the first token will make the keys
                log.error("the provider's signing keys or stored clients could not be read at start-up")
        stop = asyncio.Event()
        tasks = [asyncio.create_task(_housekeeping(services, stop, provider))]
        if isinstance(services.clock, DatabaseClock):
            tasks.append(asyncio.create_task(services.clock.keep_synced(stop)))
        if worker_wanted:
            worker = services.outbox_worker(f"serve-{os.getpid()}")
            deliver = worker.deliver

            async def counted(message: Any) -> str:  # outbox_deliveries_total
                state = await deliver(message)
                metrics.DELIVERIES.labels(message.channel, state).inc()
                return state

            worker.deliver = counted  # type: ignore[method-assign]
            app.state.wake_outbox = worker.wake
            tasks.append(asyncio.create_task(worker.run_forever(stop, config.server.outbox_poll_seconds)))
        try:
            yield
        finally:
            stop.set()
            await back_channel.close()
            await asyncio.gather(*tasks, return_exceptions=True)
            await services.close()
            if demo_sinks is not None:
                demo_sinks.stop()
            metrics.process_ended()

    app = GuichetLitestar(
        route_handlers=[
            PagesController,
            RegistrationController,
            LoginController,
            RecoveryController,
            AccountController,
            SecurityController,
            LogoutController,
            static_file,
            metrics_endpoint,
            *(oidc_routes.route_handlers() if provider is not None else []),
        ],
        template_config=TemplateConfig(
            directory=HERE / "templates", engine=JinjaTemplateEngine, engine_callback=_no_template_reload
        ),
        plugins=[HTMXPlugin()],
        before_request=before_request,
        before_send=[before_send],
        middleware=[SessionSaver],
        lifespan=[lifespan],
        request_max_body_size=FORM_BODY_LIMIT,
        compression_config=CompressionConfig(
            backend="gzip", minimum_size=500, gzip_compress_level=6, middleware_class=WholeBodyCompression
        ),
        exception_handlers={LeaveFor: leave_for_handler, HTTPException: error_handler, Exception: error_handler},
        openapi_config=None,
        logging_config=None,  # guichet configures logging itself (core/logs.py): JSON lines with the request id
        debug=False,
    )
    handler = app.asgi_handler
    if provider is not None:  # forward auth and userinfo: on every page view of the caisse's services
        handler = ServiceCalls(handler, services, provider, forward_auth=config.oidc.forward_auth)
    # outermost: a request id for every log line and response, and request metrics (404s included)
    app.asgi_handler = metrics.Instrumented(handler, access_log=config.logging.access_log)
    app.state.metrics_clients = metrics.ClientFilter(config.metrics.allowed_clients)
    app.state.trusted_proxies = AddressSet(config.security.trusted_proxies)
    app.state.public_origin = public_origin(config.server.public_url)
    app.state.services = services
    app.state.oidc = provider
    app.state.back_channel = back_channel
    app.state.api_paths = oidc_routes.API_PATHS if provider is not None else frozenset()
    app.state.csp = oidc_routes.csp(CSP, provider) if provider is not None else CSP.encode()
    app.state.static = static
    app.state.static_names = static.names
    return app


async def housekeep(services: Services, provider: Provider | None = None) -> None:
    """Drop what has served its time: expired flows and sessions, codes a day past their expiry,
    rate counters whose window has passed (Redis drops its own)."""
    now = services.now()
    await services.flows.purge(now)
    await services.codes.purge(now)
    for store in (services.session_backend, services.counter_store, provider):
        purge = getattr(store, "purge", None)
        if purge is not None:
            await purge(now)


async def _housekeeping(services: Services, stop: asyncio.Event, provider: Provider | None = None) -> None:
    """``housekeep`` every few minutes."""
    while not stop.is_set():
        try:
            await housekeep(services, provider)
        except Exception:
            log.error("housekeeping failed; will try again")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=300)


def app_from_environment() -> Litestar:
    """For ``uvicorn --factory``: the config file named by GUICHET_CONFIG.

    An app that cannot be built (a config error, a plugin refusing its settings) ends the worker
    with uvicorn's start-up failure code: the supervisor then stops, instead of starting the same
    failing worker again and again.
    """
    try:
        config = load_config(os.environ.get("GUICHET_CONFIG", "config/demo.toml"))
        configure_logging(config.logging.format, os.environ.get("GUICHET_LOG_LEVEL", config.logging.level))
        app = create_app(config)
    except ConfigError as exc:
        print(f"guichet: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(STARTUP_FAILURE) from None
    except Exception:
        log.exception("the app could not be built")
        raise SystemExit(STARTUP_FAILURE) from None
    # What exists now (modules, classes, templates, plugins, dictionaries) lives as long as the
    # worker: moved out of the cyclic collector's reach, it is no longer walked by every full
    # collection (measured in docs/benchmarks.md)
    gc.collect()
    gc.freeze()
    return app
