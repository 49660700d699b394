"""``guichet keys rotate`` and ``guichet clients add|list|remove``: the command line of the OpenID
Connect provider (the work is in guichet.web.oidc.admin)."""

from __future__ import annotations

import asyncio

import msgspec
import rich_click as click

from guichet.cli import config_option, json_option, load_config_option, show_listing
from guichet.core.config import CaisseConfig, OidcClientConfig, SecretRef
from guichet.core.errors import ConfigError


def _enabled(config_path: str) -> CaisseConfig:
    config = load_config_option(config_path)
    if not config.oidc.enabled:
        raise ConfigError("the provider is not enabled: [oidc] enabled = true")
    return config


@click.group()
def keys() -> None:
    """The OpenID Connect provider's signing keys."""


@keys.command()
@config_option
def rotate(config_path: str) -> int:
    """New signing keys (ES256 and RS256); the previous ones stay published until the tokens they
    signed have expired.

    \b
    Examples:
      guichet keys rotate --config /etc/guichet/caisse.toml
    """
    from guichet.web.oidc import admin

    kids = asyncio.run(admin.rotate_keys(_enabled(config_path)))
    click.echo("new signing keys: " + ", ".join(kids))
    click.echo("the previous keys stay published until the tokens they signed have expired")
    return 0


@click.group()
def clients() -> None:
    """Services that log people in through guichet (OpenID Connect clients)."""


@clients.command("list")
@config_option
@json_option
def clients_list(config_path: str, as_json: bool) -> int:
    """The clients the provider serves: those of the config file and those added by command.

    \b
    Examples:
      guichet clients list --config /etc/guichet/caisse.toml
      guichet clients list --json
    """
    from guichet.web.oidc import admin

    rows = asyncio.run(admin.list_clients(_enabled(config_path)))
    show_listing(
        rows,
        [
            ("id", "Id"),
            ("name", "Name"),
            ("auth_method", "Authentication"),
            ("third_party", "Third party"),
            ("scopes", "Scopes"),
            ("redirect_uris", "Redirect URIs"),
            ("source", "Declared in"),
        ],
        as_json=as_json,
        empty="no client",
    )
    return 0


@clients.command("add")
@config_option
@click.argument("client_id", metavar="ID")
@click.option("--name", help="The service's name, as the person reads it (French).")
@click.option("--description", help="A short French sentence for the consent screen and the espace privé.")
@click.option("--redirect-uri", multiple=True, help="Where the code goes back; compared exactly (repeat for several).")
@click.option("--post-logout-redirect-uri", multiple=True, help="Where a logout may return (repeat for several).")
@click.option(
    "--auth-method",
    type=click.Choice(["client_secret_basic", "private_key_jwt", "none"]),
    default="client_secret_basic",
    show_default=True,
    help="How the client authenticates at the token endpoint.",
)
@click.option("--secret-env", help="The environment variable holding the client's secret.")
@click.option("--secret-file", help="The file holding the client's secret.")
@click.option("--jwks-file", help="The client's public keys (a JWKS file), for private_key_jwt.")
@click.option(
    "--scope",
    multiple=True,
    type=click.Choice(["openid", "profile", "email", "phone", "nir"]),
    help="A scope the client may ask for (repeat for several).",
)
@click.option(
    "--subject",
    type=click.Choice(["pairwise", "public"]),
    default="pairwise",
    show_default=True,
    help="pairwise: a sub of its own per sector, so services cannot correlate a person.",
)
@click.option("--third-party", is_flag=True, help="Not the caisse's own service: the person consents first.")
def clients_add(
    config_path: str,
    client_id: str,
    name: str | None,
    description: str | None,
    redirect_uri: tuple[str, ...],
    post_logout_redirect_uri: tuple[str, ...],
    auth_method: str,
    secret_env: str | None,
    secret_file: str | None,
    jwks_file: str | None,
    scope: tuple[str, ...],
    subject: str,
    third_party: bool,
) -> int:
    """Add a client, stored in the database and served from the next start.

    \b
    Examples:
      guichet clients add releves --name "Mes relevés" --redirect-uri https://releves.example/cb \\
          --secret-env RELEVES_SECRET --config /etc/guichet/caisse.toml
    """
    from guichet.web.oidc import admin

    config = _enabled(config_path)
    secret = SecretRef(env=secret_env) if secret_env else SecretRef(file=secret_file) if secret_file else None
    table = {
        "id": client_id,
        "name": name or client_id,
        "description": description or "",
        "redirect_uris": list(redirect_uri),
        "post_logout_redirect_uris": list(post_logout_redirect_uri),
        "auth_method": auth_method,
        "jwks_file": jwks_file or "",
        "third_party": third_party,
        "subject": subject,
        **({"scopes": list(scope)} if scope else {}),
    }
    try:
        client = msgspec.convert(
            {**table, **({"secret": msgspec.to_builtins(secret)} if secret else {})}, OidcClientConfig
        )
    except msgspec.ValidationError as exc:
        raise ConfigError(str(exc)) from None
    asyncio.run(admin.add_client(config, client))
    click.echo(f"client {client.id} added; served after the next start (systemctl reload guichet)")
    return 0


@clients.command("remove")
@config_option
@click.argument("client_id", metavar="ID")
def clients_remove(config_path: str, client_id: str) -> int:
    """Remove a client added by command; its tokens are revoked.

    \b
    Examples:
      guichet clients remove releves --config /etc/guichet/caisse.toml
    """
    from guichet.cli import Refused
    from guichet.web.oidc import admin

    if not asyncio.run(admin.remove_client(_enabled(config_path), client_id)):
        raise Refused(f"no stored client {client_id}")
    click.echo(f"client {client_id} removed; its tokens are revoked")
    return 0


def oidc_lines(config: CaisseConfig) -> list[str]:
    """The OpenID Connect section of ``config check``: what the provider serves, to whom, what it gives."""
    oidc = config.oidc
    if not oidc.enabled:
        return ["OpenID Connect provider: off ([oidc] enabled = false)"]
    lines = [
        f"OpenID Connect provider: on, issuer {oidc.issuer or config.server.public_url}",
        f"  code {oidc.code_seconds} s, access token {oidc.access_token_seconds} s, ID token "
        f"{oidc.id_token_seconds} s; PKCE S256 required; forward auth: {'on' if oidc.forward_auth else 'off'}",
    ]
    if oidc.code_seconds > 120:
        lines.append(
            f"  note: oidc.code_seconds = {oidc.code_seconds}: a code is redeemed within seconds by "
            "its service; a longer life only helps whoever steals one"
        )
    for client in oidc.clients:
        party = "third party (the person consents)" if client.third_party else "first party (no consent screen)"
        subject = "public sub" if client.subject == "public" else f"pairwise sub ({client.sector or 'per host'})"
        lines.append(
            f"  client {client.id} ({client.name}): {client.auth_method}, {party}, {subject}, "
            f"scopes {' '.join(client.scopes)}, ID tokens {client.id_token_alg}"
        )
        if "nir" in client.scopes:
            lines.append(f"  note: client {client.id} may receive the NIR (scope nir)")
        if client.auth_method == "none":
            lines.append(f"  note: client {client.id} is public: PKCE is its only protection of the code")
    if not oidc.clients:
        lines.append("  no client in the config (guichet clients list shows those added by command)")
    return lines


def oidc_blockers(config: CaisseConfig) -> list[str]:
    """A private_key_jwt client whose keys file cannot be read stops the start."""
    import json

    problems = []
    for client in config.oidc.clients if config.oidc.enabled else []:
        if client.jwks_file:
            path = config.path(client.jwks_file)
            try:
                found = json.loads(path.read_text(encoding="utf-8"))["keys"]
                if not isinstance(found, list) or not found:
                    raise ValueError("no key")
            except (OSError, ValueError, KeyError, TypeError):
                problems.append(f"oidc client {client.id}: no usable JWKS in {path}")
    return problems
