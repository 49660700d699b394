"""The codes by email and SMS as an authenticator: held by whoever proved a contact, nothing to enrol.

The login's code page (core/flows/login.py) keeps its own steps for this one, which the seeds
describe: the choice of channel, a new code, the other channel when one could not be delivered. The
methods here are the same codes through the authenticator contract: what Mon compte lists, what the
assurance check reads, and a challenge and answer for any caller of the contract.
"""

from __future__ import annotations

from typing import Any, Literal

from guichet.core.errors import StepError
from guichet.core.flows.common import (
    CODE_WRONG,
    account_by_id,
    account_recipient,
    check_code,
    masked_destination,
    proven_kinds,
    reaches,
    send_code,
)
from guichet.core.identifiers import parse_code
from guichet.core.keys import new_token
from guichet.core.services import Services
from guichet.core.structs import EMAIL, MOBILE, AccountRef, Assurance, Challenge, Check, Enrolment, Prompt

# Enrolment ids of the two contacts: they are no rows of their own
CONTACT_IDS = {EMAIL: 1, MOBILE: 2}


class ContactCodes:
    """A one-time code sent to a proven email address or mobile number."""

    name = "code"
    label_fr = "Code de sécurité par e-mail ou SMS"
    description_fr = "Un code à usage unique envoyé à votre adresse e-mail ou à votre téléphone portable."
    rank = 10
    enrolment: Literal["page", "letter", "contacts"] = "contacts"

    def __init__(self, services: Services) -> None:
        self.services = services
        kinds = {c.reaches for c in services.host.channels_for("login")}
        # NIST SP 800-63B-4 §3.1.3.1: an email is no out-of-band authenticator at AAL2; SMS is "restricted"
        self.assurance = Assurance(
            amr=("otp",),  # the same whichever channel carried the code: a service sees one value for codes
            aal=1 if EMAIL in kinds else 2,
            restricted=MOBILE in kinds,
        )

    async def _account(self, account: AccountRef | None) -> dict[str, Any] | None:
        return await account_by_id(self.services, account.id) if account is not None else None

    def _channels(self, account: dict[str, Any]) -> list[str]:
        from guichet.core.flows.login import proven_channels  # the login's own rule: only proven addresses

        return proven_channels(self.services, account)

    async def enrolments(self, account: AccountRef) -> list[Enrolment]:
        row = await self._account(account)
        return self.enrolments_of(row) if row is not None else []

    def enrolments_of(self, row: dict[str, Any]) -> list[Enrolment]:
        """The proven contacts of an account row core already holds (core/flows/authenticate.py)."""
        recipient = account_recipient(row)
        proven = proven_kinds(row)
        found: list[Enrolment] = []
        for channel in self._channels(row):
            kind = reaches(self.services, channel)
            if kind in CONTACT_IDS and kind in proven and all(e.id != CONTACT_IDS[kind] for e in found):
                found.append(
                    Enrolment(
                        id=CONTACT_IDS[kind],
                        label=masked_destination(self.services, channel, recipient),
                        created_at=row["created_at"],
                    )
                )
        return found

    async def challenge(self, account: AccountRef | None) -> Challenge:
        row = await self._account(account)
        channels = self._channels(row) if row is not None else []
        policy = self.services.host.code_policy("login")
        prompt = Prompt(
            widget="code",
            heading_fr="Code de sécurité",
            text_fr=(f"Saisissez le code à {policy.length} caractères que vous venez de recevoir.",),
            field_label_fr="Code de sécurité",
            max_length=policy.length,
        )
        if row is None or not channels:
            return Challenge(prompt=prompt)
        binding = new_token()
        error = await send_code(
            self.services,
            purpose="login",
            binding=binding,
            channel=channels[0],
            recipient=account_recipient(row),
            account_id=row["id"],
            template="login_code",
            new_binding=True,
        )
        return Challenge(prompt=prompt, state="" if error else binding)

    async def verify(self, account: AccountRef | None, state: str, form: dict[str, str]) -> Check:
        if account is None or not state:
            return Check(ok=False)
        try:
            code = parse_code(form.get("code", ""), self.services.host.code_policy("login").length)
        except StepError as error:
            return Check(ok=False, message_fr=error.message_fr)
        check, message = await check_code(
            self.services, purpose="login", binding=state, code=code, account_id=account.id
        )
        if message or check is None:
            return Check(ok=False, message_fr=message or CODE_WRONG)
        return Check(ok=True, account_id=account.id)

    async def begin_enrolment(self, account: AccountRef) -> Challenge:
        return Challenge(
            prompt=Prompt(
                widget="confirm",
                heading_fr="Vos coordonnées",
                text_fr=("Les codes vont à l'adresse e-mail et au numéro de portable que vous avez confirmés.",),
                button_fr="Modifier mes coordonnées",
            )
        )

    async def finish_enrolment(self, account: AccountRef, state: str, form: dict[str, str]) -> Check:
        return Check(ok=False, message_fr="Vos coordonnées se modifient dans Mon compte, « Mes coordonnées ».")

    async def remove(self, account: AccountRef, enrolment_id: int) -> bool:
        return False  # a contact is changed on the contacts page, with a code to the new one
