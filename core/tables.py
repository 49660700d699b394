"""piccolo Tables, unbound: core.database binds a copy of each to one engine per app. A plugin that
stores data of its own keeps its tables (the registry: plugins/registry_tables/tables.py)."""

from __future__ import annotations

from piccolo.columns import BigInt, Boolean, Date, Integer, Serial, Text, Timestamptz, Varchar
from piccolo.table import Table


class Account(Table, tablename="guichet_account"):
    id = Serial(primary_key=True)
    identifier_kind = Varchar(length=8)
    identifier = Varchar(length=20, unique=True)
    status = Varchar(length=40)
    last_name = Varchar(length=120)
    first_name = Varchar(length=120, default="")
    birth_date = Date(null=True, default=None)
    email = Varchar(length=254, null=True, default=None)
    email_verified = Boolean(default=False)
    mobile = Varchar(length=20, null=True, default=None)
    mobile_verified = Boolean(default=False)
    landline = Varchar(length=20, null=True, default=None)
    fax = Varchar(length=20, null=True, default=None)
    password_hash = Varchar(length=255)
    password_is_temporary = Boolean(default=True)
    temporary_expires_at = Timestamptz(null=True, default=None)
    password_changed_at = Timestamptz(null=True, default=None)
    contacts_confirmed_at = Timestamptz(null=True, default=None)
    credentials_version = Integer(default=1)  # bumped on every credential change: ends sessions, revokes browsers
    created_at = Timestamptz()


class Flow(Table, tablename="guichet_flow"):
    id = Serial(primary_key=True)
    token = Varchar(length=64, unique=True)  # sha256 of the 128-bit flow id
    kind = Varchar(length=32)
    step = Varchar(length=32)
    data = Text(default="{}")
    created_at = Timestamptz()
    expires_at = Timestamptz()


class OneTimeCode(Table, tablename="guichet_code"):
    id = Serial(primary_key=True)
    purpose = Varchar(length=32)
    binding = Varchar(length=64, index=True)  # the flow or session the code belongs to
    account_id = Integer(null=True, default=None)
    code_hmac = Varchar(length=64)
    channel = Varchar(length=16)
    attempts = Integer(default=0)
    max_attempts = Integer(default=3)
    created_at = Timestamptz()
    expires_at = Timestamptz()
    used_at = Timestamptz(null=True, default=None)
    superseded_at = Timestamptz(null=True, default=None)


class OutboxMessage(Table, tablename="guichet_outbox"):
    id = Serial(primary_key=True)
    channel = Varchar(length=32, index=True)
    template = Varchar(length=64)
    sealed = Text()  # recipient and payload, encrypted with the outbox key; emptied at a final state
    state = Varchar(length=16, index=True)  # pending, sending, sent, failed, expired
    attempts = Integer(default=0)
    next_attempt_at = Timestamptz()
    lease_until = Timestamptz(null=True, default=None)
    last_error = Varchar(length=300, default="")
    created_at = Timestamptz()
    expires_at = Timestamptz(null=True, default=None)
    finished_at = Timestamptz(null=True, default=None)
    # attempts that may have reached the recipient without the worker knowing (a timeout after the
    # request was sent, a worker killed mid-send): bounded, since each may have been delivered and billed
    unknown_outcomes = Integer(default=0)
    # a digest of what the message was sent for (a code's purpose and binding), so the page waiting
    # for it can tell whether it was delivered; '' for messages nobody waits on
    sent_for = Varchar(length=64, default="", index=True)


class TrustedBrowser(Table, tablename="guichet_trusted_browser"):
    id = Serial(primary_key=True)
    account_id = Integer(index=True)
    token_hash = Varchar(length=64, unique=True)
    label = Varchar(length=120, default="")
    credentials_version = Integer(default=1)
    created_at = Timestamptz()
    expires_at = Timestamptz()
    last_used_at = Timestamptz(null=True, default=None)
    revoked_at = Timestamptz(null=True, default=None)


class AuditLog(Table, tablename="guichet_audit"):
    id = Serial(primary_key=True)
    at = Timestamptz(index=True)
    kind = Varchar(length=48, index=True)
    account_id = Integer(null=True, default=None)
    subject = Varchar(length=40, default="")
    client = Varchar(length=64, default="")
    details = Text(default="{}")


class RateCounter(Table, tablename="guichet_rate_counter"):
    id = Serial(primary_key=True)
    key = Varchar(length=96, unique=True)  # an HMAC of what is counted: no identifier in clear
    hits = Integer(default=0)
    window_start_ms = BigInt()  # epoch milliseconds: compared the same way on every engine
    last_at_ms = BigInt()
    prev_at_ms = BigInt(default=0)  # the hit before the last: a try is judged by the pause since the one before it
    window_ms = BigInt()


class Session(Table, tablename="guichet_session"):
    id = Serial(primary_key=True)
    key = Varchar(length=64, unique=True)  # sha256 of the session id from the cookie
    data = Text(default="{}")
    expires_at = Timestamptz(index=True)


class ThirdPartyRequest(Table, tablename="guichet_third_party_request"):
    id = Serial(primary_key=True)
    structure_kind = Varchar(length=40)
    structure_name = Varchar(length=120)
    siret = Varchar(length=14)
    contact_name = Varchar(length=120)
    email = Varchar(length=254)
    phone = Varchar(length=20, default="")
    state = Varchar(length=16, default="pending")
    created_at = Timestamptz()
    decided_at = Timestamptz(null=True, default=None)
    note = Varchar(length=300, default="")
    address = Text(default="")  # the structure's postal address, up to 6 lines joined by newlines
    account_id = Integer(null=True, default=None)  # the account an approval created


class OidcKey(Table, tablename="guichet_oidc_key"):
    """A signing key of the OpenID Connect provider: the private half sealed with the caisse's key."""

    id = Serial(primary_key=True)
    kid = Varchar(length=64, unique=True)
    alg = Varchar(length=8)
    sealed = Text()  # the private JWK, sealed (core.keys.Keys.seal, purpose "oidc-key")
    public_jwk = Text()
    created_at = Timestamptz()
    retired_at = Timestamptz(null=True, default=None)  # no longer signs; stays in the JWKS until drop_after
    drop_after = Timestamptz(null=True, default=None)


class OidcGrant(Table, tablename="guichet_oidc_grant"):
    """One authorization: its single-use code (kept as a SHA-256), what was asked and how the person logged in."""

    id = Serial(primary_key=True)
    code_hash = Varchar(length=64, unique=True)
    client_id = Varchar(length=64, index=True)
    account_id = Integer(index=True)
    login_ref = Varchar(length=64, index=True)  # a digest of the login it came from: a logout revokes it
    redirect_uri = Text()
    scope = Varchar(length=200)
    nonce = Text(default="")
    code_challenge = Varchar(length=128)
    auth_time = Timestamptz()
    amr = Varchar(length=40)
    acr = Varchar(length=80)
    created_at = Timestamptz()
    expires_at = Timestamptz()
    used_at = Timestamptz(null=True, default=None)
    revoked_at = Timestamptz(null=True, default=None)


class OidcToken(Table, tablename="guichet_oidc_token"):
    """An access token, kept as its SHA-256; it dies with its grant."""

    id = Serial(primary_key=True)
    token_hash = Varchar(length=64, unique=True)
    grant_id = Integer(index=True)
    expires_at = Timestamptz()
    revoked_at = Timestamptz(null=True, default=None)


class OidcClient(Table, tablename="guichet_oidc_client"):
    """A service added with ``guichet clients add``: its settings as the config's [[oidc.clients]] table
    (JSON), secrets as references only; read when the app starts."""

    id = Serial(primary_key=True)
    client_id = Varchar(length=64, unique=True)
    settings = Text()
    created_at = Timestamptz()


class OidcAssertion(Table, tablename="guichet_oidc_assertion"):
    """A client assertion (private_key_jwt) already used, kept until it expires: used once only."""

    id = Serial(primary_key=True)
    jti_hash = Varchar(length=64, unique=True)  # SHA-256 of the client id and the assertion's jti
    expires_at = Timestamptz(index=True)


class OidcSubject(Table, tablename="guichet_oidc_subject"):
    """The ``sub`` a sector of services knows a person by: random, so it neither reveals the person nor
    changes when the caisse's secret key rotates; one per (account, sector)."""

    id = Serial(primary_key=True)
    account_id = Integer()
    sector = Varchar(length=255)
    subject = Varchar(length=64, unique=True)


class OidcConsent(Table, tablename="guichet_oidc_consent"):
    """What a person agreed a third-party service may receive."""

    id = Serial(primary_key=True)
    account_id = Integer(index=True)
    client_id = Varchar(length=64)
    scope = Varchar(length=200)
    created_at = Timestamptz()


class Credential(Table, tablename="guichet_credential"):
    """What an authenticator keeps of one enrolment (a passkey, an authenticator app, one recovery code),
    whatever its plugin: core's ``CredentialStore`` is the only reader and writer."""

    id = Serial(primary_key=True)
    account_id = Integer(index=True)
    kind = Varchar(length=32)  # the authenticator's name
    label = Varchar(length=80, default="")
    lookup = Varchar(length=255, default="")  # what finds it from outside: a passkey's id, a recovery code's HMAC
    secret = Text(default="")  # sealed (AES-GCM, a key per kind) when it must be read back: a TOTP key
    public = Text(default="{}")  # JSON: a passkey's public key and transports...
    counter = BigInt(default=0)  # only ever moves up: a passkey's signature count, a TOTP time step used
    created_at = Timestamptz()
    last_used_at = Timestamptz(null=True, default=None)
    used_at = Timestamptz(null=True, default=None)  # single-use ones: when it was used


class SchemaVersion(Table, tablename="guichet_schema_version"):
    id = Serial(primary_key=True)
    version = Integer()
    applied_at = Timestamptz()


ALL_TABLES: tuple[type[Table], ...] = (
    Account,
    Flow,
    OneTimeCode,
    OutboxMessage,
    TrustedBrowser,
    AuditLog,
    RateCounter,
    Session,
    ThirdPartyRequest,
    OidcKey,
    OidcGrant,
    OidcToken,
    OidcClient,
    OidcAssertion,
    OidcSubject,
    OidcConsent,
    Credential,
    SchemaVersion,
)
