"""RecoveryCodes: a set of single-use codes sent by post, kept as HMACs, each used once."""

from __future__ import annotations

import re
import secrets
from typing import Literal

from guichet.core import (
    POSTAL,
    AccountRef,
    Assurance,
    Challenge,
    Check,
    CredentialStore,
    Delivery,
    Enrolment,
    Prompt,
)

KIND = "recovery_code"
TEMPLATE = "recovery_codes_letter"
COUNT = 10
LENGTH = 10  # characters of a code, printed in two groups of five
# no 0/O, 1/I/L, 2/Z, 5/S, 8/B: what is read on paper is typed right
ALPHABET = "ACDEFGHJKMNPQRTUVWXY34679"
LABEL = "Codes de secours par courrier"
_IGNORED = re.compile(r"[\s\u00a0\u202f\-\u2010-\u2015_.]+")
WRONG = (
    "Ce code de secours n'est pas valable. Vérifiez-le : il se trouve dans la dernière lettre de codes de secours "
    "que votre MSA vous a envoyée."
)
USED = "Ce code de secours a déjà servi : chaque code ne sert qu'une fois. Utilisez un autre code de la lettre."


def new_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def shown(code: str) -> str:
    """A code as printed: ``ACDEF-34679``."""
    return f"{code[:5]}-{code[5:]}"


def normalised(typed: str) -> str:
    """What a person typed, without case, spaces or dashes ("acdef 34679" is ACDEF34679)."""
    return _IGNORED.sub("", typed).upper()


class RecoveryCodes:
    """The ``recovery_code`` authenticator."""

    name = KIND
    label_fr = LABEL
    description_fr = (
        "Une lettre de codes à usage unique, envoyée à votre adresse postale, pour vous connecter le jour où vous "
        "n'avez plus votre téléphone."
    )
    assurance = Assurance(amr=("otp",), aal=2)
    rank = 0  # offered last: a way back in, not a daily one
    enrolment: Literal["page", "letter", "contacts"] = "letter"

    def __init__(self, store: CredentialStore) -> None:
        self.store = store

    def __repr__(self) -> str:
        return "RecoveryCodes()"

    def _lookup(self, account_id: int, code: str) -> str:
        # bound to the account: a code of someone else's letter finds nothing, even before the account check
        return self.store.lookup_digest(KIND, f"{account_id}:{code}")

    async def enrolments(self, account: AccountRef) -> list[Enrolment]:
        """One enrolment for the whole set (its id is its first code's), with how many codes are left."""
        codes = await self.store.of_account(account.id, KIND)
        if not codes:
            return []
        used = [c.used_at for c in codes if c.used_at is not None]
        return [
            Enrolment(
                id=codes[0].id,
                label=LABEL,
                created_at=codes[0].created_at,
                last_used_at=max(used) if used else None,
                remaining=len(codes) - len(used),
            )
        ]

    async def challenge(self, account: AccountRef | None) -> Challenge:
        prompt = Prompt(
            widget="code",
            heading_fr="Code de secours",
            text_fr=(
                "Saisissez l'un des codes de secours de la lettre que votre MSA vous a envoyée par courrier.",
                "Chaque code ne sert qu'une fois : rayez-le sur la lettre après l'avoir utilisé. Vous devrez "
                "ensuite choisir un nouveau moyen de vous connecter.",
            ),
            field_label_fr="Code de secours",
            field_hint_fr="10 lettres et chiffres, par exemple ACDEF-34679 (les tirets et les espaces ne comptent pas).",
            input_mode="text",
            autocomplete="off",
            max_length=16,
        )
        return Challenge(prompt=prompt, state=f"{KIND}:{account.id}" if account is not None else "")

    async def verify(self, account: AccountRef | None, state: str, form: dict[str, str]) -> Check:
        if account is None or state != f"{KIND}:{account.id}":
            return Check(ok=False)
        code = normalised(form.get("code", ""))
        if not code:
            return Check(ok=False, message_fr="Veuillez saisir l'un des codes de secours de votre lettre.")
        if len(code) != LENGTH or any(c not in ALPHABET for c in code):
            return Check(ok=False, message_fr=WRONG)
        found = await self.store.find(KIND, self.store.lookup_digests(KIND, f"{account.id}:{code}"))
        if found is None or found.account_id != account.id:
            return Check(ok=False, message_fr=WRONG)
        if found.used_at is not None or not await self.store.use_once(found.id):
            return Check(ok=False, message_fr=USED)
        return Check(ok=True, account_id=account.id, enrolment_id=found.id, then_enrol=True)

    async def begin_enrolment(self, account: AccountRef) -> Challenge:
        held = await self.store.of_account(account.id, KIND)
        text = [
            f"Nous allons vous envoyer par courrier une lettre avec {COUNT} codes de secours, à l'adresse postale "
            "que votre MSA connaît. Comptez quelques jours pour la recevoir.",
            "Chaque code ne sert qu'une fois. Il vous permet de vous connecter le jour où vous n'avez plus votre "
            "téléphone ou vos autres moyens de connexion.",
        ]
        if held:
            text.append(
                "Les codes de secours que vous avez déjà reçus ne fonctionneront plus : seuls ceux de la nouvelle "
                "lettre seront valables."
            )
        else:
            text.append("Si vous demandez plus tard une nouvelle lettre, les codes de celle-ci ne fonctionneront plus.")
        return Challenge(
            prompt=Prompt(
                widget="confirm",
                heading_fr="Recevoir des codes de secours par courrier",
                text_fr=tuple(text),
                button_fr="Recevoir mes codes par courrier",
            ),
            state=f"+{KIND}:{account.id}",
        )

    async def finish_enrolment(self, account: AccountRef, state: str, form: dict[str, str]) -> Check:
        if state != f"+{KIND}:{account.id}":
            return Check(ok=False)
        codes: list[str] = []
        while len(codes) < COUNT:
            code = new_code()
            if code not in codes:
                codes.append(code)
        # core runs this in the transaction that queues the letter: no letter, no new set
        await self.store.remove_all(account.id, KIND)
        first = None
        for code in codes:
            added = await self.store.add(
                account_id=account.id, kind=KIND, label=LABEL, lookup=self._lookup(account.id, code)
            )
            first = added if first is None else first
        return Check(
            ok=True,
            account_id=account.id,
            enrolment_id=first,
            delivery=Delivery(kind=POSTAL, template=TEMPLATE, payload={"codes": [shown(c) for c in codes]}),
        )

    async def remove(self, account: AccountRef, enrolment_id: int) -> bool:
        """Remove the whole set, given the id ``enrolments`` gave it (or any of its codes')."""
        codes = await self.store.of_account(account.id, KIND)
        if all(c.id != enrolment_id for c in codes):
            return False
        return await self.store.remove_all(account.id, KIND) > 0
