"""A bare Litestar app for bench/steps.py and bench/oidc.py: one read of guichet's own store on
its own database engine, and nothing else (no CSRF, no template, no middleware). Bench-only: it
is never part of guichet's routes.

    GUICHET_CONFIG=... BENCH_FLOW_DIGEST=... uvicorn bare_app:create --factory --app-dir bench
    GET /flow: the flow read of a step; GET /session?key=...: the session read of forward auth;
    GET /token?digest=...: the access-token read of userinfo
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from litestar import Litestar, get  # noqa: E402

from guichet.core.config import load_config  # noqa: E402
from guichet.core.database import Database  # noqa: E402
from guichet.core.statements import select_where  # noqa: E402


def create() -> Litestar:
    database = Database.from_config(load_config(os.environ["GUICHET_CONFIG"]))
    digest = os.environ.get("BENCH_FLOW_DIGEST", "")
    flow = database.t.Flow

    @get("/flow", sync_to_thread=False)
    async def read_flow() -> str:
        # the same read as core.flows.engine.Flows.load
        now = dt.datetime.now(dt.UTC)
        rows = await (
            flow.select(flow.data)
            .where((flow.token == digest) & (flow.kind == "registration") & (flow.expires_at > now))
            .limit(1)
            .run()
        )
        return str(rows[0]["data"]) if rows else "-"

    session = database.t.Session

    @get("/session", sync_to_thread=False)
    async def read_session(key: str) -> str:
        # the same statement as core.sessions.DatabaseSessions.load (a point read: on SQLite it
        # runs on the event loop's thread, as guichet's does)
        rows = await session.raw(select_where(session, ("data",), "key"), key).run()
        return "1" if rows else "-"

    token = database.t.OidcToken

    @get("/token", sync_to_thread=False)
    async def read_token(digest: str) -> str:
        # the access token read by its digest, as the provider's userinfo reads it (which joins its
        # grant in the same statement), written once as guichet's point reads are
        rows = await token.raw(
            select_where(token, ("grant_id", "expires_at", "revoked_at"), "token_hash"), digest
        ).run()
        return "1" if rows else "-"

    return Litestar(
        [read_flow, read_session, read_token],
        on_startup=[database.connect],
        on_shutdown=[database.close],
        openapi_config=None,
        logging_config=None,
    )
