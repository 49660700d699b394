"""authenticator_recovery: ten single-use codes in a letter, kept as HMACs bound to the account, each used
once (parallel tries too), a new letter ends the old set; the letter read back from its PDF."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from guichet.core.flows import authenticate
from guichet.core.outbox import SENT
from guichet.core.outbox_worker import OutboxWorker
from guichet.core.structs import Authenticator, Check
from guichet.plugins.authenticator_recovery.authenticator import ALPHABET, USED, WRONG, normalised
from tests.conftest import Portal
from tests.plugins.conftest import CLIENT, new_session
from tests.security.support import make_account, remember

SHOWN = re.compile(rf"^[{ALPHABET}]{{5}}-[{ALPHABET}]{{5}}$")


def recovery_of(portal: Portal) -> Authenticator:
    found = portal.services.host.authenticator("recovery_code")
    assert found is not None
    return found  # type: ignore[no-any-return]


async def ask_for_codes(portal: Portal, account: dict[str, Any]) -> list[str]:
    """Ask for a letter of codes through core, as Mon compte will; the codes the letter carries."""
    services, recovery = portal.services, recovery_of(portal)
    session = new_session(services)
    challenge = await authenticate.begin_enrolment(services, session, recovery, account)
    assert challenge.prompt.widget == "confirm"
    check, message = await authenticate.finish_enrolment(services, session, recovery, account, {}, client=CLIENT)
    assert check.ok and message == "", message
    letters = await portal.outbox("recovery_codes_letter")
    codes: list[str] = letters[-1]["payload"]["codes"]
    remember(*codes, *(c.replace("-", "") for c in codes))
    return codes


async def use(portal: Portal, account: dict[str, Any], typed: str) -> tuple[Check, str]:
    """The login's second step with a recovery code, through core (rate limits, audit)."""
    services, recovery = portal.services, recovery_of(portal)
    session = new_session(services)
    await authenticate.start(services, session, recovery, account)
    return await authenticate.verify(services, session, recovery, account, {"code": typed}, client=CLIENT)


async def judge(portal: Portal, account: dict[str, Any], typed: str) -> Check:
    """The plugin alone."""
    recovery = recovery_of(portal)
    ref = authenticate.account_ref(portal.services, account)
    return await recovery.verify(ref, (await recovery.challenge(ref)).state, {"code": typed})


async def test_the_letter_goes_by_post_and_reads_back_from_its_pdf(
    auth_portal: Portal, holder: dict[str, Any], tmp_path: Path
) -> None:
    services = auth_portal.services
    recovery = recovery_of(auth_portal)
    prompt = (await recovery.begin_enrolment(authenticate.account_ref(services, holder))).prompt
    assert prompt.widget == "confirm" and any("10 codes" in p and "courrier" in p for p in prompt.text_fr)
    codes = await ask_for_codes(auth_portal, holder)
    assert len(codes) == len(set(codes)) == 10 and all(SHOWN.match(c) for c in codes)
    [letter, *_] = await auth_portal.outbox("recovery_codes_letter")
    assert letter["channel"] == "postal" and letter["payload"] == {"codes": codes}
    assert letter["recipient"]["address"]["lines"]  # the registry's address, never a typed one
    # the notice goes to the address the person proved, never to a mobile only typed (it may be a stranger's)
    [notice] = await auth_portal.outbox("authenticator_changed_notice")
    assert notice["channel"] == "email" and notice["payload"]["authenticator"] == "Codes de secours par courrier"
    # once the mobile is proven too, to both (SP 800-63B-4 §4.6: every notification address)
    t = services.database.t.Account
    await t.update({t.mobile_verified: True}).where(t.id == holder["id"]).run()
    await ask_for_codes(auth_portal, {**holder, "mobile_verified": True})
    notices = (await auth_portal.outbox("authenticator_changed_notice"))[1:]
    assert sorted(n["channel"] for n in notices) == ["email", "sms"]
    # the outbox worker hands it to the postal channel, which writes the PDF
    worker = OutboxWorker(services.database, services.keys, services.host, services.clock, worker_id="t")
    await worker.run_once()
    t = services.database.t.OutboxMessage
    [row] = await t.select().where(t.id == letter["id"]).run()
    assert row["state"] == SENT
    postal = services.host.channel("postal")
    pdf = PdfReader(postal.spool / f"letter-{letter['id']}.pdf")  # type: ignore[union-attr]
    text = "\n".join(page.extract_text() for page in pdf.pages)
    flat = " ".join(text.split())
    assert "Objet : vos codes de secours pour Mon espace privé" in text
    for number, code in enumerate(codes, start=1):
        assert f"{number}. {code}" in text
    assert "ne sert qu'une seule fois" in flat  # each works once
    assert "Gardez cette lettre en lieu sûr" in flat and "à personne" in flat  # keep it safe
    assert "Si vous perdez cette lettre" in flat and "cesseront alors de fonctionner" in flat  # if lost
    assert "01 23 45 67 89" in flat  # whom to call


async def test_the_codes_are_never_kept_in_clear(
    auth_portal: Portal, holder: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    codes = await ask_for_codes(auth_portal, holder)
    assert (await use(auth_portal, holder, codes[0]))[0].ok
    assert not (await use(auth_portal, holder, codes[0]))[0].ok
    database = auth_portal.services.database
    rows = await database.t.Credential.raw("SELECT * FROM guichet_credential").run()
    assert len(rows) == 10 and all(re.fullmatch(r"[0-9a-f]{64}", r["lookup"]) and r["secret"] == "" for r in rows)
    raw = repr(rows)
    assert not any(code in raw or code.replace("-", "") in raw for code in codes)
    if database.is_sqlite:
        files = b"".join(p.read_bytes() for p in tmp_path.glob("guichet.sqlite*"))
        assert files and not any(code.replace("-", "").encode() in files for code in codes)
    lines = [r.getMessage() for r in caplog.records] + [caplog.text]
    assert caplog.records
    assert not any(c in line or c.replace("-", "") in line for c in codes for line in lines)


async def test_a_code_works_once_then_asks_for_a_new_way_in(auth_portal: Portal, holder: dict[str, Any]) -> None:
    codes = await ask_for_codes(auth_portal, holder)
    check, message = await use(auth_portal, holder, codes[3])
    assert check.ok and check.then_enrol and message == ""
    assert await use(auth_portal, holder, codes[3]) == (Check(ok=False, message_fr=USED), USED)
    ref = authenticate.account_ref(auth_portal.services, holder)
    [enrolment] = await recovery_of(auth_portal).enrolments(ref)
    assert enrolment.remaining == 9 and enrolment.last_used_at is not None
    # what people type: lower case, spaces, no dash, a typographic dash
    for typed in (codes[4].lower(), codes[5].replace("-", " "), codes[6].replace("-", ""), codes[7].replace("-", "–")):
        assert (await judge(auth_portal, holder, f" {typed} ")).ok, typed
    assert (await judge(auth_portal, holder, "")).message_fr.startswith("Veuillez saisir")
    assert (await judge(auth_portal, holder, "ABC")).message_fr == WRONG
    assert (await judge(auth_portal, holder, codes[8][:-1] + "0")).message_fr == WRONG  # 0 is not in the alphabet


async def test_parallel_uses_of_one_code_let_one_in(auth_portal: Portal, holder: dict[str, Any]) -> None:
    codes = await ask_for_codes(auth_portal, holder)
    results = await asyncio.gather(*(judge(auth_portal, holder, codes[0]) for _ in range(6)))
    assert sorted(r.ok for r in results) == [False] * 5 + [True]
    assert {r.message_fr for r in results if not r.ok} == {USED}


async def test_another_accounts_code_is_refused(auth_portal: Portal, holder: dict[str, Any]) -> None:
    other = await make_account(auth_portal, "exploitant")
    theirs = await ask_for_codes(auth_portal, other)
    mine = await ask_for_codes(auth_portal, holder)
    assert not set(theirs) & set(mine)
    check, message = await use(auth_portal, holder, theirs[0])
    assert not check.ok and message == WRONG
    # a challenge of someone else's answers for no one
    recovery, services = recovery_of(auth_portal), auth_portal.services
    other_state = (await recovery.challenge(authenticate.account_ref(services, other))).state
    assert not (await recovery.verify(authenticate.account_ref(services, holder), other_state, {"code": mine[0]})).ok
    assert not (await recovery.verify(None, "", {"code": mine[0]})).ok
    # both are still whole
    assert (await use(auth_portal, other, theirs[0]))[0].ok and (await use(auth_portal, holder, mine[0]))[0].ok


async def test_a_new_letter_ends_the_old_set(auth_portal: Portal, holder: dict[str, Any]) -> None:
    old = await ask_for_codes(auth_portal, holder)
    assert (await use(auth_portal, holder, old[0]))[0].ok
    recovery, services = recovery_of(auth_portal), auth_portal.services
    ref = authenticate.account_ref(services, holder)
    again = (await recovery.begin_enrolment(ref)).prompt
    assert any("ne fonctionneront plus" in p for p in again.text_fr)
    new = await ask_for_codes(auth_portal, holder)
    assert not set(old) & set(new)
    for code in old[1:3]:
        assert (await judge(auth_portal, holder, code)).message_fr == WRONG
    assert (await judge(auth_portal, holder, new[1])).ok
    [enrolment] = await recovery.enrolments(ref)
    assert enrolment.remaining == 9
    assert len(await services.host.credentials.of_account(holder["id"], "recovery_code")) == 10
    assert len(await auth_portal.outbox("recovery_codes_letter")) == 2


async def test_no_address_no_letter_and_the_old_set_stays(auth_portal: Portal, holder: dict[str, Any]) -> None:
    codes = await ask_for_codes(auth_portal, holder)
    services, recovery = auth_portal.services, recovery_of(auth_portal)
    unknown = await make_account(auth_portal, "exploitant", identifier="1990175123456")  # not in the registry
    session = new_session(services)
    await authenticate.begin_enrolment(services, session, recovery, unknown)
    with pytest.raises(LookupError):
        await authenticate.finish_enrolment(services, session, recovery, unknown, {}, client=CLIENT)
    assert await services.host.credentials.of_account(unknown["id"], "recovery_code") == []
    # the same for someone who had a set: a failed letter removes nothing
    t = services.database.t.Account
    await t.update({t.identifier: "1990175123457"}).where(t.id == holder["id"]).run()
    holder = {**holder, "identifier": "1990175123457"}
    session = new_session(services)
    await authenticate.begin_enrolment(services, session, recovery, holder)
    with pytest.raises(LookupError):
        await authenticate.finish_enrolment(services, session, recovery, holder, {}, client=CLIENT)
    assert len(await services.host.credentials.of_account(holder["id"], "recovery_code")) == 10
    assert (await judge(auth_portal, holder, codes[0])).ok
    assert len(await auth_portal.outbox("recovery_codes_letter")) == 1


async def test_removing_the_set_removes_every_code(auth_portal: Portal, holder: dict[str, Any]) -> None:
    codes = await ask_for_codes(auth_portal, holder)
    recovery, services = recovery_of(auth_portal), auth_portal.services
    ref = authenticate.account_ref(services, holder)
    [enrolment] = await recovery.enrolments(ref)
    other = await make_account(auth_portal, "exploitant")
    assert not await recovery.remove(authenticate.account_ref(services, other), enrolment.id)
    assert not await recovery.remove(ref, enrolment.id + 100)
    assert await authenticate.remove(services, recovery, holder, enrolment.id, client=CLIENT)
    assert await recovery.enrolments(ref) == []
    assert (await judge(auth_portal, holder, codes[1])).message_fr == WRONG
    notices = await auth_portal.outbox("authenticator_changed_notice")
    assert [n["payload"]["change"] for n in notices if n["channel"] == "email"] == ["added", "removed"]


def test_typed_codes_are_read_without_case_spaces_or_dashes() -> None:
    assert normalised(" acdef-34679 ") == normalised("ACDEF 34679") == normalised("acdef\u00a034679") == "ACDEF34679"
    assert normalised("ACDEF\u201134679") == normalised("ACDEF_34679") == "ACDEF34679"  # a non-breaking hyphen
    assert not set("0O1IL2Z5S8B") & set(ALPHABET)


async def test_a_letter_outlives_a_rotation_of_the_secret_key(auth_portal: Portal, holder: dict[str, Any]) -> None:
    """Codes posted before ``security.secret_key`` rotated (the old key in ``previous_secret_keys``) still work."""
    from guichet.core.keys import Keys

    codes = await ask_for_codes(auth_portal, holder)
    store = auth_portal.services.host.credentials
    old = auth_portal.services.config.security.secret_key.resolve()
    store._keys = Keys("a-new-secret-key-after-rotation-0123456789abcdef", previous=[old])
    assert (await judge(auth_portal, holder, codes[0])).ok
    store._keys = Keys("a-new-secret-key-after-rotation-0123456789abcdef")  # the old key dropped: the letter is void
    assert (await judge(auth_portal, holder, codes[1])).message_fr == WRONG
