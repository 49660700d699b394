"""Passkeys (WebAuthn) as an authenticator, on Duo's ``webauthn`` library."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any, Literal

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    base64url_to_bytes,
    bytes_to_base64url,
    parse_authentication_credential_json,
    parse_client_data_json,
)
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from guichet.core import (
    PARIS,
    AccountRef,
    Assurance,
    Challenge,
    Check,
    Clock,
    CredentialStore,
    Enrolment,
    Prompt,
    StoredCredential,
)
from guichet.plugins.authenticator_passkey.settings import RelyingParty

log = logging.getLogger("guichet.plugins.authenticator_passkey")

KIND = "passkey"
REFUSED = "Votre clé d'accès n'a pas pu être vérifiée. Veuillez réessayer, ou choisir une autre méthode."
UNKNOWN = "Cette clé d'accès n'est pas enregistrée sur votre espace privé. Choisissez une autre méthode."
CLONED = (
    "Cette clé d'accès semble avoir été copiée : par sécurité, elle est refusée. Choisissez une autre méthode, "
    "puis supprimez-la dans Mon compte et créez-en une nouvelle."
)
NOT_CREATED = "La clé d'accès n'a pas pu être créée. Veuillez réessayer."
ALREADY = "Cette clé d'accès est déjà enregistrée sur votre espace privé."
OTHER_SITE = "Cette clé d'accès a été utilisée sur un autre site que celui de votre caisse : elle est refusée."


class Passkey:
    """A passkey with user verification: the phone or computer unlocks it the way it unlocks itself."""

    name = KIND
    label_fr = "Clé d'accès"
    description_fr = (
        "Votre téléphone ou votre ordinateur vous reconnaît avec l'empreinte, le visage ou le code que vous "
        "utilisez déjà pour le déverrouiller : rien à taper, rien à retenir."
    )
    rank = 30
    enrolment: Literal["page", "letter", "contacts"] = "page"
    # "swk", not "hwk": synced passkeys are accepted, and their private key leaves the device (copied to
    # the person's other devices through their account at Apple, Google...): a software key by RFC 8176's
    # words, and AAL2, not AAL3, in NIST SP 800-63B-4. "user": user verification is required every time.
    assurance = Assurance(amr=("swk", "user"), aal=2, phishing_resistant=True, replaces_password=True)

    def __init__(self, store: CredentialStore, party: RelyingParty, clock: Clock, timeout_seconds: int = 300) -> None:
        self.store = store
        self.party = party
        self.clock = clock
        self.timeout_ms = timeout_seconds * 1000

    # --- what Mon compte lists and removes ------------------------------------------------------------

    async def enrolments(self, account: AccountRef) -> list[Enrolment]:
        return [
            Enrolment(id=c.id, label=c.label, created_at=c.created_at, last_used_at=c.last_used_at)
            for c in await self.store.of_account(account.id, KIND)
        ]

    async def remove(self, account: AccountRef, enrolment_id: int) -> bool:
        return await self.store.remove(account.id, KIND, enrolment_id)

    # --- enrolment: navigator.credentials.create() ---------------------------------------------------

    async def begin_enrolment(self, account: AccountRef) -> Challenge:
        held = await self.store.of_account(account.id, KIND)
        options = generate_registration_options(
            rp_id=self.party.id,
            rp_name=self.party.name,
            user_id=user_id(account),
            user_name=account.name,
            user_display_name=account.name,
            timeout=self.timeout_ms,
            attestation=AttestationConveyancePreference.NONE,
            authenticator_selection=AuthenticatorSelectionCriteria(
                # a discoverable credential, so that the same passkey also serves as a whole login
                resident_key=ResidentKeyRequirement.REQUIRED,
                user_verification=UserVerificationRequirement.REQUIRED,
            ),
            exclude_credentials=[descriptor(c) for c in held],
        )
        return Challenge(
            prompt=Prompt(
                widget="webauthn",
                heading_fr="Créer une clé d'accès",
                text_fr=(
                    "Votre téléphone ou votre ordinateur va vous demander votre empreinte, votre visage ou son code "
                    "de déverrouillage.",
                    "Ils restent sur votre appareil : la caisse ne les reçoit jamais.",
                ),
                ask_label=True,
                label_hint_fr="Par exemple : Téléphone de Marie. Ce nom vous aide à la reconnaître dans Mon compte.",
                button_fr="Créer ma clé d'accès",
                public={"ceremony": "create", "options": json.loads(options_to_json(options))},
            ),
            state=bytes_to_base64url(options.challenge),
        )

    async def finish_enrolment(self, account: AccountRef, state: str, form: dict[str, str]) -> Check:
        try:
            data = json.loads(form.get("credential", ""))
            origin = client_origin(data)
            if not self.party.accepts(origin):
                return Check(ok=False, message_fr=OTHER_SITE)
            verified = verify_registration_response(
                credential=data,
                expected_challenge=base64url_to_bytes(state),
                expected_rp_id=self.party.id,
                expected_origin=origin,
                require_user_verification=True,
            )
            transports = [t for t in data.get("response", {}).get("transports", []) if isinstance(t, str)]
        except Exception as error:  # the browser's answer is untrusted input: any flaw in it is a refusal
            log.info("passkey enrolment refused: %s", type(error).__name__)
            return Check(ok=False, message_fr=NOT_CREATED)
        lookup = bytes_to_base64url(verified.credential_id)
        if await self.store.find(KIND, lookup) is not None:
            return Check(ok=False, message_fr=ALREADY)
        label = " ".join(form.get("label", "").split())[:80] or default_label(self.clock)
        enrolment_id = await self.store.add(
            account_id=account.id,
            kind=KIND,
            label=label,
            lookup=lookup,
            public={
                "public_key": bytes_to_base64url(verified.credential_public_key),
                "transports": [t for t in transports if t in {m.value for m in AuthenticatorTransport}],
                "backed_up": verified.credential_backed_up,
                "user_handle": bytes_to_base64url(user_id(account)),
            },
            counter=verified.sign_count,
        )
        return Check(ok=True, account_id=account.id, enrolment_id=enrolment_id)

    # --- login: navigator.credentials.get() ----------------------------------------------------------

    async def challenge(self, account: AccountRef | None) -> Challenge:
        # a whole login (no account yet) asks for any passkey of this site: the browser lists the person's own
        held = await self.store.of_account(account.id, KIND) if account is not None else []
        options = generate_authentication_options(
            rp_id=self.party.id,
            timeout=self.timeout_ms,
            allow_credentials=[descriptor(c) for c in held],
            user_verification=UserVerificationRequirement.REQUIRED,
        )
        return Challenge(
            prompt=Prompt(
                widget="webauthn",
                heading_fr="Utiliser ma clé d'accès",
                text_fr=(
                    "Votre téléphone ou votre ordinateur va vous demander votre empreinte, votre visage ou son code "
                    "de déverrouillage.",
                ),
                button_fr="Utiliser ma clé d'accès",
                public={"ceremony": "get", "options": json.loads(options_to_json(options))},
            ),
            state=bytes_to_base64url(options.challenge),
        )

    async def verify(self, account: AccountRef | None, state: str, form: dict[str, str]) -> Check:
        try:
            data = json.loads(form.get("credential", ""))
            parsed = parse_authentication_credential_json(data)
            origin = client_origin(data)
            challenge = base64url_to_bytes(state)
        except Exception as error:  # untrusted input
            log.info("passkey answer refused: %s", type(error).__name__)
            return Check(ok=False, message_fr=REFUSED)
        credential = await self.store.find(KIND, bytes_to_base64url(parsed.raw_id))
        if credential is None or (account is not None and credential.account_id != account.id):
            return Check(ok=False, message_fr=UNKNOWN)
        if not self.party.accepts(origin):
            return Check(ok=False, message_fr=OTHER_SITE)
        handle = parsed.response.user_handle
        if handle and bytes_to_base64url(handle) != credential.public.get("user_handle"):
            return Check(ok=False, message_fr=REFUSED)
        try:
            verified = verify_authentication_response(
                credential=parsed,
                expected_challenge=challenge,
                expected_rp_id=self.party.id,
                expected_origin=origin,
                credential_public_key=base64url_to_bytes(credential.public["public_key"]),
                # the counter is judged below, in one conditional write that a parallel request cannot pass too
                credential_current_sign_count=0,
                require_user_verification=True,
            )
        except Exception as error:  # a bad signature, another RP ID, no user verification, a stale challenge...
            log.info("passkey answer refused: %s", type(error).__name__)
            return Check(ok=False, message_fr=REFUSED)
        new = verified.new_sign_count
        # a passkey that counts nothing sends 0 every time (synced ones do); one that counts must go up
        moved = await self.store.advance(credential.id, new, allow_equal=new == 0 and credential.counter == 0)
        if not moved:
            log.warning(
                "passkey %s of account %s: signature counter %s not above %s (a cloned authenticator?)",
                credential.id,
                credential.account_id,
                new,
                credential.counter,
            )
            return Check(ok=False, message_fr=CLONED, reason="cloned")
        return Check(ok=True, account_id=credential.account_id, enrolment_id=credential.id)


def user_id(account: AccountRef) -> bytes:
    """The WebAuthn user handle: the account's opaque handle (at most 64 bytes, as WebAuthn allows)."""
    raw = account.handle.encode()
    return raw if len(raw) <= 64 else hashlib.sha256(raw).digest()


def descriptor(credential: StoredCredential) -> PublicKeyCredentialDescriptor:
    known = {t.value: t for t in AuthenticatorTransport}
    transports = [known[t] for t in credential.public.get("transports", []) if t in known]
    return PublicKeyCredentialDescriptor(id=base64url_to_bytes(credential.lookup), transports=transports or None)


def client_origin(data: Any) -> str:
    """The origin the browser wrote in clientDataJSON (checked again by the library's verification)."""
    return str(parse_client_data_json(base64url_to_bytes(data["response"]["clientDataJSON"])).origin)


def default_label(clock: Clock) -> str:
    return f"Clé d'accès du {clock.now().astimezone(PARIS).strftime('%d/%m/%Y')}"
