"""What ``guichet keys rotate`` and ``guichet clients add|list|remove`` do (src/guichet/oidc_commands.py
reads the command line and prints)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec

from guichet.core.config import CaisseConfig, OidcClientConfig, check_client
from guichet.core.errors import ConfigError
from guichet.core.services import build_services
from guichet.web.oidc.provider import Provider


async def _provider(config: CaisseConfig) -> Provider:
    services = build_services(config)
    await services.database.connect()
    return Provider(services)


async def rotate_keys(config: CaisseConfig) -> list[str]:
    """New signing keys (the kids); the old ones stay in the JWKS until the tokens they signed expire."""
    provider = await _provider(config)
    try:
        return await provider.rotate_keys()
    finally:
        await provider.services.close()


async def list_clients(config: CaisseConfig) -> list[dict[str, Any]]:
    provider = await _provider(config)
    try:
        stored = set(await provider.load_stored_clients())
        return [
            {
                "id": c.id,
                "name": c.config.name,
                "auth_method": c.config.auth_method,
                "third_party": c.config.third_party,
                "scopes": list(c.config.scopes),
                "redirect_uris": list(c.config.redirect_uris),
                "source": "database" if c.id in stored else "config",
            }
            for c in provider.clients.values()
        ]
    finally:
        await provider.services.close()


async def add_client(config: CaisseConfig, client: OidcClientConfig) -> None:
    """Store a service; it is served from the next start (``systemctl reload guichet``)."""
    try:
        check_client(client, "$", production=config.server.mode == "production")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if any(c.id == client.id for c in config.oidc.clients):
        raise ConfigError(f"the client {client.id} is already declared in the config file")
    provider = await _provider(config)
    try:
        t = provider.services.database.t.OidcClient
        if await t.exists().where(t.client_id == client.id).run():
            raise ConfigError(f"the client {client.id} exists already: remove it first")
        await t.insert(
            t(client_id=client.id, settings=msgspec.json.encode(client).decode(), created_at=dt.datetime.now(dt.UTC))
        ).run()
    finally:
        await provider.services.close()


async def remove_client(config: CaisseConfig, client_id: str) -> bool:
    """Forget a stored service and revoke what it was given; whether it was there."""
    if any(c.id == client_id for c in config.oidc.clients):
        raise ConfigError(f"the client {client_id} is declared in the config file: remove it there")
    provider = await _provider(config)
    try:
        database = provider.services.database
        clients, grants, tokens = database.t.OidcClient, database.t.OidcGrant, database.t.OidcToken
        now = dt.datetime.now(dt.UTC)
        async with database.transaction():
            gone = await clients.delete().where(clients.client_id == client_id).returning(clients.id).run()
            ids = [row["id"] for row in await grants.select(grants.id).where(grants.client_id == client_id).run()]
            await (
                grants.update({grants.revoked_at: now})
                .where((grants.client_id == client_id) & grants.revoked_at.is_null())
                .run()
            )
            if ids:
                await (
                    tokens.update({tokens.revoked_at: now})
                    .where(tokens.grant_id.is_in(ids) & tokens.revoked_at.is_null())
                    .run()
                )
        return bool(gone)
    finally:
        await provider.services.close()
