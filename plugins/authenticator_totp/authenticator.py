"""TotpAuthenticator: enrols an authenticator app with a QR code, judges its codes once each."""

from __future__ import annotations

import hmac
import logging
import re
from typing import Literal

import pyotp
import segno

from guichet.core import (
    AccountRef,
    Assurance,
    Challenge,
    Check,
    CredentialStore,
    Enrolment,
    PluginContext,
    Prompt,
    StoredCredential,
)
from guichet.plugins.authenticator_totp.settings import TotpSettings

log = logging.getLogger("guichet.plugins.authenticator_totp")

KIND = "totp"
KEY_LENGTH = 32  # base32 characters: 160 bits, the length RFC 4226 recommends for the shared secret
WINDOW = 1  # time steps accepted either side of now: a phone's clock a little off, a code typed slowly
_SPACES = re.compile(r"[\s\u00a0\u202f\-]+")
_KEY = re.compile(rf"^[A-Z2-7]{{{KEY_LENGTH}}}$")
WRONG_CODE = "Ce code ne correspond pas. Saisissez le code que votre application affiche en ce moment."
ALREADY_USED = "Ce code a déjà servi. Attendez que l'application affiche un nouveau code, puis saisissez-le."


class TotpAuthenticator:
    """The ``totp`` authenticator: codes from an app on the person's phone."""

    name = KIND
    label_fr = "Application d'authentification"
    description_fr = (
        "Une application sur votre téléphone qui affiche un code à 6 chiffres, renouvelé toutes les 30 secondes."
    )
    assurance = Assurance(amr=("otp",), aal=2)
    rank = 20
    enrolment: Literal["page", "letter", "contacts"] = "page"

    def __init__(self, settings: TotpSettings, context: PluginContext, store: CredentialStore) -> None:
        self.settings = settings
        self.context = context
        self.store = store
        self.issuer = settings.issuer or context.config.caisse.name
        self.digits = settings.digits
        self.period = settings.period
        if self.digits != 6 or self.period != 30:
            self.description_fr = (
                f"Une application sur votre téléphone qui affiche un code à {self.digits} chiffres, "
                f"renouvelé toutes les {self.period} secondes."
            )

    def __repr__(self) -> str:
        return f"TotpAuthenticator(issuer={self.issuer!r}, digits={self.digits}, period={self.period})"

    # -- time steps and codes ---------------------------------------------------------------------

    def _now_step(self) -> int:
        return int(self.context.clock.now().timestamp()) // self.period

    def _totp(self, key: str) -> pyotp.TOTP:
        return pyotp.TOTP(key, digits=self.digits, interval=self.period)

    def _step_of(self, key: str, code: str) -> int | None:
        """The time step, within the window around now, whose code this is (the latest if several are)."""
        totp, now = self._totp(key), self._now_step()
        found = None
        for step in range(now - WINDOW, now + WINDOW + 1):
            if hmac.compare_digest(totp.generate_otp(step).encode(), code.encode()):
                found = step
        return found

    def _code(self, form: dict[str, str]) -> tuple[str, str]:
        """(the typed code, "") or ("", why it cannot be one)."""
        typed = _SPACES.sub("", form.get("code", ""))
        if not typed:
            return "", "Veuillez saisir le code affiché par votre application."
        if not re.fullmatch(rf"[0-9]{{{self.digits}}}", typed, re.ASCII):
            return "", f"Le code comporte {self.digits} chiffres : recopiez celui qu'affiche votre application."
        return typed, ""

    def _key(self, credential: StoredCredential) -> str | None:
        try:
            return self.store.secret(credential).decode("ascii")
        except (ValueError, UnicodeDecodeError):
            # the caisse's secret key changed and its predecessor was dropped from previous_secret_keys
            log.warning("the key of authenticator app %d cannot be opened with the caisse's keys", credential.id)
            return None

    # -- the contract -------------------------------------------------------------------------------

    async def enrolments(self, account: AccountRef) -> list[Enrolment]:
        return [
            Enrolment(id=c.id, label=c.label, created_at=c.created_at, last_used_at=c.last_used_at)
            for c in await self.store.of_account(account.id, KIND)
        ]

    async def challenge(self, account: AccountRef | None) -> Challenge:
        prompt = Prompt(
            widget="code",
            heading_fr="Code de votre application d'authentification",
            text_fr=(
                f"Ouvrez l'application d'authentification de votre téléphone : elle affiche un code à "
                f"{self.digits} chiffres sous le nom « {self.issuer} ». Saisissez ce code ci-dessous.",
                "Le code change toutes les "
                f"{self.period} secondes : s'il est sur le point de changer, attendez le suivant.",
            ),
            field_label_fr=f"Code à {self.digits} chiffres",
            max_length=self.digits + 2,  # room for a space in the middle, as some apps show it
        )
        # the state binds the answer to this account: a login's challenge answers for no one else
        return Challenge(prompt=prompt, state=f"{KIND}:{account.id}" if account is not None else "")

    async def verify(self, account: AccountRef | None, state: str, form: dict[str, str]) -> Check:
        if account is None or state != f"{KIND}:{account.id}":
            return Check(ok=False)
        code, problem = self._code(form)
        if problem:
            return Check(ok=False, message_fr=problem)
        replayed = False
        for credential in await self.store.of_account(account.id, KIND):
            key = self._key(credential)
            step = self._step_of(key, code) if key is not None else None
            if step is None:
                continue
            # one conditional update: the step must be later than the last one used, and only one of
            # two parallel requests with the same code moves the counter
            if step > credential.counter and await self.store.advance(credential.id, step):
                return Check(ok=True, account_id=account.id, enrolment_id=credential.id)
            replayed = True
        return Check(ok=False, message_fr=ALREADY_USED if replayed else WRONG_CODE)

    async def begin_enrolment(self, account: AccountRef) -> Challenge:
        key = pyotp.random_base32(length=KEY_LENGTH)
        uri = self._totp(key).provisioning_uri(name=account.name, issuer_name=self.issuer)
        svg = segno.make(uri, error="m").svg_inline(
            scale=5, border=4, title="QR code à scanner avec votre application d'authentification"
        )
        prompt = Prompt(
            widget="setup",
            heading_fr="Ajouter une application d'authentification",
            text_fr=(
                "Il vous faut une application d'authentification sur votre téléphone. Si vous n'en avez pas, "
                "installez-en une depuis le magasin d'applications de votre téléphone (par exemple FreeOTP, "
                "Google Authenticator ou Microsoft Authenticator) : elles sont gratuites.",
                "Ouvrez l'application, choisissez d'ajouter un compte, puis visez le QR code ci-dessous avec "
                "l'appareil photo de votre téléphone.",
                "Vous ne pouvez pas scanner ? Choisissez plutôt de saisir une clé et recopiez la clé écrite sous le "
                "QR code (les espaces ne comptent pas). Ne la donnez à personne.",
                f"L'application affiche alors un code à {self.digits} chiffres : saisissez-le ci-dessous pour "
                "terminer.",
            ),
            field_label_fr=f"Code à {self.digits} chiffres affiché par l'application",
            max_length=self.digits + 2,
            ask_label=True,
            label_hint_fr="Par exemple « Téléphone de Marie » : ce nom vous aidera à le reconnaître si vous "
            "ajoutez un autre téléphone.",
            button_fr="Terminer",
            qr_svg=svg,
            key_text=" ".join(key[i : i + 4] for i in range(0, len(key), 4)),
        )
        return Challenge(prompt=prompt, state=key)

    async def finish_enrolment(self, account: AccountRef, state: str, form: dict[str, str]) -> Check:
        if not _KEY.match(state):
            return Check(ok=False)
        code, problem = self._code(form)
        if problem:
            return Check(ok=False, message_fr=problem)
        step = self._step_of(state, code)
        if step is None:
            return Check(
                ok=False,
                message_fr="Ce code ne correspond pas. Vérifiez que votre téléphone est à l'heure exacte, puis "
                "saisissez le code que l'application affiche maintenant.",
            )
        label = " ".join(form.get("label", "").split())[:80] or self.label_fr
        # the first code's step is used: the same code cannot log in right afterwards
        enrolment_id = await self.store.add(
            account_id=account.id, kind=KIND, label=label, secret=state.encode("ascii"), counter=step
        )
        return Check(ok=True, account_id=account.id, enrolment_id=enrolment_id)

    async def remove(self, account: AccountRef, enrolment_id: int) -> bool:
        return await self.store.remove(account.id, KIND, enrolment_id)
