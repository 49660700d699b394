"""``guichet keys rotate`` and ``guichet clients add|list|remove``: the command line of the OpenID
Connect provider, in one function so it moves as one piece (the work is in guichet.web.oidc.admin)."""
from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable

import msgspec

from guichet.core.config import OidcClientConfig, SecretRef, load_config
from guichet.core.errors import ConfigError


def run(args: argparse.Namespace) -> int:
    """One of: keys rotate; clients list; clients add (options as [[oidc.clients]] keys); clients remove ID."""
    from guichet.web.oidc import admin

    config = load_config(args.config)
    if not config.oidc.enabled:
        raise ConfigError("the provider is not enabled: [oidc] enabled = true")
    if args.oidc_command == "rotate":
        kids = asyncio.run(admin.rotate_keys(config))
        print("new signing keys: " + ", ".join(kids))
        print("the previous keys stay published until the tokens they signed have expired")
        return 0
    if args.action == "list":
        for client in asyncio.run(admin.list_clients(config)):
            print(json.dumps(client, ensure_ascii=False))
        return 0
    if args.action == "remove":
        if not args.id:
            raise ConfigError("which client? guichet clients remove ID")
        found = asyncio.run(admin.remove_client(config, args.id))
        print(f"client {args.id} removed; its tokens are revoked" if found else f"no stored client {args.id}")
        return 0 if found else 1
    secret = SecretRef(env=args.secret_env) if args.secret_env else SecretRef(file=args.secret_file) \
        if args.secret_file else None
    table = {"id": args.id, "name": args.name or args.id, "description": args.description or "",
             "redirect_uris": args.redirect_uri or [], "post_logout_redirect_uris": args.post_logout_redirect_uri or [],
             "auth_method": args.auth_method, "jwks_file": args.jwks_file or "", "third_party": args.third_party,
             "subject": args.subject, **({"scopes": args.scope} if args.scope else {})}
    try:
        client = msgspec.convert({**table, **({"secret": msgspec.to_builtins(secret)} if secret else {})},
                                 OidcClientConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(str(exc)) from None
    asyncio.run(admin.add_client(config, client))
    print(f"client {client.id} added; served after the next start (systemctl reload guichet)")
    return 0


def add_parsers(sub: "argparse._SubParsersAction[argparse.ArgumentParser]",
                with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]) -> None:
    """The ``keys`` and ``clients`` commands on the ``guichet`` parser."""
    keys = sub.add_parser("keys", help="the provider's signing keys").add_subparsers(dest="oidc_command", required=True)
    rotate = with_config(keys.add_parser("rotate", help="new signing keys; old ones stay published a while"))
    rotate.set_defaults(func=run)
    clients = with_config(sub.add_parser("clients", help="services that log people in through guichet"))
    clients.add_argument("action", choices=["list", "add", "remove"])
    clients.add_argument("id", nargs="?")
    clients.add_argument("--name")
    clients.add_argument("--description")
    clients.add_argument("--redirect-uri", action="append")
    clients.add_argument("--post-logout-redirect-uri", action="append")
    clients.add_argument("--auth-method", choices=["client_secret_basic", "private_key_jwt", "none"],
                         default="client_secret_basic")
    clients.add_argument("--secret-env", help="the environment variable holding the client's secret")
    clients.add_argument("--secret-file", help="the file holding the client's secret")
    clients.add_argument("--jwks-file", help="the client's public keys, for private_key_jwt")
    clients.add_argument("--scope", action="append", choices=["openid", "profile", "email", "phone", "nir"])
    clients.add_argument("--subject", choices=["pairwise", "public"], default="pairwise")
    clients.add_argument("--third-party", action="store_true", help="ask the person's consent")
    clients.set_defaults(func=run, oidc_command="clients")
