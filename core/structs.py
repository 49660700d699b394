"""Frozen msgspec Structs that cross hook and HTTP boundaries, and the Channel protocol."""

from __future__ import annotations

import datetime as dt
import enum
from decimal import Decimal
from typing import Any, Literal, Protocol, runtime_checkable

import msgspec


class Verdict(enum.Enum):
    """The result of checking an identity answer."""

    RIGHT = "right"
    WRONG = "wrong"
    UNVERIFIABLE = "unverifiable"


class Status(msgspec.Struct, frozen=True, kw_only=True):
    """A kind of account holder ("Particulier", "Entreprise"...)."""

    code: str
    label_fr: str
    hint_fr: str = ""
    identifier_kind: str = "nir"  # "nir" or "siret"
    questions: tuple[str, ...] = ()  # question kinds this status accepts, in display order
    third_party: bool = False  # "Autre": a request handled by hand, no account created online


class Payment(msgspec.Struct, frozen=True, kw_only=True):
    """A payment the caisse knows: a benefit received, an invoice or contributions paid."""

    kind: str  # "benefit", "contributions_invoice", "salary_contributions"
    date: dt.date
    amount: Decimal


class PostalAddress(msgspec.Struct, frozen=True, kw_only=True):
    """At most 6 lines of 38 characters, as a window envelope shows them."""

    lines: tuple[str, ...]


class Record(msgspec.Struct, frozen=True, kw_only=True):
    """What the caisse already knows of a person or company (the registry).

    ``facts`` holds what a registry connector knows that core never names (the amount of the last
    "prime d'activité", the date of the last payment...): the connector that brings them
    (``guichet_registry_lookup`` or ``guichet_registry_facts``) and the identity question plugin that
    reads them agree on the keys; values are JSON-like (str, int, float, bool, lists and tables of
    them; dates as ISO strings).
    """

    identifier_kind: str
    identifier: str
    last_name: str
    first_name: str = ""
    birth_date: dt.date | None = None
    address: PostalAddress | None = None
    email: str | None = None
    mobile: str | None = None
    vitale_serial: str | None = None
    health_affiliated: bool = False
    payments: tuple[Payment, ...] = ()
    facts: dict[str, Any] = {}


class Question(msgspec.Struct, frozen=True, kw_only=True):
    """An identity question a plugin can ask: its wording, and how the answer field behaves.

    The plugin that offers a question also checks the form of its answers
    (``guichet_identity_answer``) and judges them (``guichet_identity_check``).
    """

    kind: str  # "vitale", "payment", or a kind of the plugin's own
    label_fr: str  # the choice's label on the question page
    hint_fr: str = ""  # under the answer field once this question is chosen: what to type, with an example
    help_fr: str = ""  # where to find the answer ("au dos de votre carte Vitale, sous la puce")
    input_mode: Literal["text", "numeric", "decimal"] = "text"  # the phone keyboard to show
    autocomplete: str = "off"
    max_length: int = 40
    params: dict[str, Any] = {}


class CodePolicy(msgspec.Struct, frozen=True, kw_only=True):
    """How a one-time code for one purpose looks and lives."""

    length: int = 6
    alphabet: str = "0123456789"
    lifetime_minutes: int = 10
    max_attempts: int = 3
    resend_cooldown_seconds: int = 60
    channels: tuple[str, ...] = ("email", "sms")


class PasswordContext(msgspec.Struct, frozen=True, kw_only=True):
    """The person's own data, which a password must not contain."""

    words: tuple[str, ...] = ()
    caisse_name: str = ""


class PasswordRule(msgspec.Struct, frozen=True, kw_only=True):
    """A password rule with its French wording; ``kind`` selects the check in core.passwords."""

    kind: str  # "min_length", "classes", "blocklist", "context", "max_length"
    message_fr: str
    value: int = 0


class Strength(msgspec.Struct, frozen=True, kw_only=True):
    """A strength estimate for the meter: 0 faible, 1 moyen, 2 fort."""

    level: int
    label_fr: str


# The address kinds core knows: what a person types and proves with a code (EMAIL, MOBILE), what the
# registry holds (POSTAL), and the person's identifier at the caisse (IDENTIFIER: NIR or SIRET), which
# the caisse's own systems (a secure messaging) know their people by. A channel plugin may reach a
# kind of its own, read from Recipient.addresses.
EMAIL, MOBILE, POSTAL, IDENTIFIER = "email", "mobile", "postal", "identifier"
# What a message carries, which a channel declares it can deliver (Channel.carries)
CODE, PASSWORD, NOTICE, LETTER = "code", "password", "notice", "letter"


class Recipient(msgspec.Struct, frozen=True, kw_only=True):
    """Where a message goes, taken from the account or the registry, never from a form."""

    name: str = ""
    email: str | None = None
    mobile: str | None = None
    address: PostalAddress | None = None
    addresses: dict[str, str] = {}  # addresses of the kinds channel plugins define

    def only(self, kind: str) -> "Recipient":
        """This recipient with its address of ``kind`` alone: a message carries no other address."""
        return Recipient(
            name=self.name,
            email=self.email if kind == EMAIL else None,
            mobile=self.mobile if kind == MOBILE else None,
            address=self.address if kind == POSTAL else None,
            addresses={k: v for k, v in self.addresses.items() if k == kind},
        )

    def reachable_by(self, kind: str) -> bool:
        """Whether this recipient has an address of ``kind``."""
        if kind == EMAIL:
            return bool(self.email)
        if kind == MOBILE:
            return bool(self.mobile)
        if kind == POSTAL:
            return self.address is not None and bool(self.address.lines)
        return bool(self.addresses.get(kind))


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """A message to deliver; the payload is decrypted only for the channel."""

    id: int
    channel: str
    template: str
    recipient: Recipient
    payload: dict[str, Any]
    caisse_name: str
    created_at: dt.datetime


class AuditEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A security-relevant fact; never holds a code, a password, a token or a full NIR."""

    kind: str
    at: dt.datetime
    account_id: int | None = None
    subject: str = ""  # masked identifier
    client: str = ""
    details: dict[str, Any] = {}


class Measurement(msgspec.Struct, frozen=True, kw_only=True):
    """A number core measured, for ``guichet_measure`` observers (the metrics plugin): never holds a
    code, a password, a token or an identifier.

    Names core measures: ``argon2_seconds`` (labels ``operation``: hash, verify; the time in the
    hashing thread), ``argon2_cpu_seconds`` (same labels; that thread's CPU time for it, with one lane only),
    ``argon2_wait_seconds`` (waiting for a hashing slot), ``rate_limit_hit`` and
    ``rate_limit_refusal`` (label ``limit``; value 1), ``outbox_unrecorded_seconds`` (between a
    channel accepting a message and its ``sent`` state being stored: the duplicate window).
    """

    name: str
    value: float = 1.0
    labels: dict[str, str] = {}


class MailboxItem(msgspec.Struct, frozen=True, kw_only=True):
    """One message delivered in demo mode, as the demo mailbox page shows it.

    ``html`` is the email's HTML body exactly as sent (not escaped): render it in a sandboxed
    iframe or as escaped text, never as markup of the page itself.
    """

    id: str  # the file name: stable, unique, safe in a URL
    kind: Literal["email", "sms", "letter"]
    when: dt.datetime
    to: str
    subject: str = ""
    text: str = ""
    html: str = ""
    file: str = ""  # letters: the PDF's file name in the postal spool (see ``DemoMailbox.letter``)


class SettingsNote(msgspec.Struct, frozen=True, kw_only=True):
    """What a plugin says of its own settings for this deployment: ``refused`` stops the start."""

    key: str  # the key path, like "$.plugins.settings.delivery_email.security"
    message: str
    refused: bool = False


@runtime_checkable
class Channel(Protocol):
    """A way to reach a person. ``send`` raises DeliveryError on failure.

    ``name`` is what a caisse config lists (``[codes.login] channels``); ``label_fr`` completes
    "Recevoir le code ..." and "Un mot de passe temporaire vous a été envoyé ..." ("par e-mail",
    "par SMS", "par courrier", "dans votre messagerie MSA"); ``reaches`` is the kind of address the
    channel delivers to (``EMAIL``, ``MOBILE``, ``POSTAL`` or a kind of its own, read from
    ``Recipient.addresses``). A channel may also declare ``carries`` (a frozenset of ``CODE``,
    ``PASSWORD``, ``NOTICE``, ``LETTER``; by default codes, passwords and notices, or passwords and
    letters for ``POSTAL``) and ``destination_fr(recipient) -> str``, the masked destination a page
    shows ("j…e@exemple.fr"; by default masked for email and mobile, empty otherwise).
    An optional ``async probe() -> str`` reaches the channel's server without sending anything
    (``guichet config check --connect``): it returns what answered, or raises DeliveryError.
    """

    name: str
    label_fr: str
    reaches: str

    async def send(self, message: Message) -> None: ...


@runtime_checkable
class Registry(Protocol):
    """A source of Records: the caisse's own information system, or the imported tables."""

    async def lookup(self, identifier_kind: str, identifier: str) -> Record | None: ...


# --- Authenticators: what proves it is the person, after the password or instead of it -------------


class Assurance(msgspec.Struct, frozen=True, kw_only=True):
    """What an authenticator proves: the login's ``amr`` values (RFC 8176) and where it stands
    against NIST SP 800-63B-4 once the password is also verified."""

    amr: tuple[str, ...]  # "otp", "sms", "hwk", "swk", "user"...; core adds "pwd" and "mfa" itself
    aal: int = 2  # the level the password and this authenticator reach together: 1 when NIST refuses it at AAL2
    phishing_resistant: bool = False  # bound to the caisse's origin (WebAuthn): a look-alike site gets nothing
    replaces_password: bool = False  # two factors by itself (a passkey with user verification): a whole login
    restricted: bool = False  # a "restricted" authenticator (SMS, SP 800-63B-4 §3.2.9): an alternative must exist


class AccountRef(msgspec.Struct, frozen=True, kw_only=True):
    """The account an authenticator works for: no secret, no contact."""

    id: int
    name: str  # "Marie DUPONT": what an authenticator app or a passkey manager shows
    handle: str  # stable, opaque, per account and caisse: a WebAuthn user id, never the NIR


class Enrolment(msgspec.Struct, frozen=True, kw_only=True):
    """One authenticator a person holds, as Mon compte lists it."""

    id: int
    label: str  # the person's name for it ("Téléphone de Marie"), or the plugin's
    created_at: dt.datetime
    last_used_at: dt.datetime | None = None
    remaining: int | None = None  # single-use sets (recovery codes): how many are left


class Prompt(msgspec.Struct, frozen=True, kw_only=True):
    """What a page shows to use or enrol an authenticator. The web layer has one template per widget:
    ``code`` (a field for a code), ``webauthn`` (the browser's passkey dialog, ``public`` being its
    options), ``setup`` (a QR code and the key as text, then a field for the first code) and
    ``confirm`` (sentences and a button)."""

    widget: Literal["code", "webauthn", "setup", "confirm"]
    heading_fr: str
    text_fr: tuple[str, ...] = ()  # paragraphs, plain and short
    field_label_fr: str = ""
    field_hint_fr: str = ""
    input_mode: Literal["text", "numeric"] = "numeric"
    autocomplete: str = "one-time-code"
    max_length: int = 12
    ask_label: bool = False  # enrolment: the person names what they add
    label_hint_fr: str = ""
    button_fr: str = "Valider"
    public: dict[str, Any] = {}  # handed to the browser as JSON (WebAuthn options): nothing secret
    qr_svg: str = ""  # ``setup``: an inline SVG, drawn on the server
    key_text: str = ""  # ``setup``: the key to type by hand, for whoever cannot scan (shown to its owner only)


class Challenge(msgspec.Struct, frozen=True, kw_only=True):
    """A prompt and what its answer is checked against (a WebAuthn challenge, a TOTP key being set
    up): core keeps ``state`` sealed in the server-side session, never in the page."""

    prompt: Prompt
    state: str = ""


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    """A message core queues for the person in the transaction of the change (recovery codes by post)."""

    kind: str  # the address kind: POSTAL for a letter
    template: str
    payload: dict[str, Any] = {}


class Check(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to a prompt."""

    ok: bool
    message_fr: str = ""  # why not, for the person, in French
    account_id: int | None = None  # a whole login: whose authenticator answered
    enrolment_id: int | None = None
    delivery: Delivery | None = None  # to queue now (a finished enrolment's letter)
    then_enrol: bool = False  # the person must enrol a new authenticator next (a recovery code was used)
    reason: str = ""  # why not, for the audit ("cloned"); "wrong" when empty. Never a secret or an input


@runtime_checkable
class Authenticator(Protocol):
    """A way to prove it is the person: a second factor after the password, or a whole login.

    ``name`` is URL-safe and unique ("passkey", "totp", "recovery_code", "code"); ``label_fr``
    names it on the pages ("Clé d'accès"), ``description_fr`` says in one sentence what it is;
    ``rank`` orders the login's choices, highest first; ``enrolment`` says how a person gets one:
    ``page`` (on Mon compte), ``letter`` (sent by post from Mon compte) or ``contacts`` (nothing to
    enrol: the contacts the person proved). Methods get the account (None for a whole login, where
    ``verify`` says whose it was) and ``state``, what the matching ``challenge`` or
    ``begin_enrolment`` returned. Core counts every try against the rate limits, audits it, sends
    the notices and keeps ``state``: an authenticator only judges.
    """

    name: str
    label_fr: str
    description_fr: str
    assurance: Assurance
    rank: int
    enrolment: Literal["page", "letter", "contacts"]

    async def enrolments(self, account: AccountRef) -> list[Enrolment]: ...
    async def challenge(self, account: AccountRef | None) -> Challenge: ...
    async def verify(self, account: AccountRef | None, state: str, form: dict[str, str]) -> Check: ...
    async def begin_enrolment(self, account: AccountRef) -> Challenge: ...
    async def finish_enrolment(self, account: AccountRef, state: str, form: dict[str, str]) -> Check: ...
    async def remove(self, account: AccountRef, enrolment_id: int) -> bool: ...
