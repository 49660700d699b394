"""The passkey authenticator (plugins/authenticator_passkey) with a software passkey (tests/plugins/softkey.py),
on SQLite and PostgreSQL: enrolment, the second factor, the whole login, removal, and every refusal
(another site, another RP ID, no user verification, a cloned authenticator, a stale or foreign answer,
malformed input) as a French ``Check``, never an exception. The browser's side, with Chromium's virtual
authenticator, is in tests/browser/test_passkey.py."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from guichet.core import AccountRef, Authenticator, CredentialStore, PluginContext
from guichet.core.clock import FrozenClock
from guichet.core.config import CaisseConfig
from guichet.core.database import Database
from guichet.core.plugins import PluginHost, check_authenticator
from guichet.plugins.authenticator_passkey import passkey as messages
from guichet.plugins.authenticator_passkey.passkey import Passkey
from guichet.plugins.authenticator_passkey.settings import PasskeySettings, relying_party, settings_notes
from guichet.testing import BASE_CONFIG
from tests.plugins.softkey import SoftPasskey, b64url

ORIGIN = "https://monespace.msa.test"
MARIE = AccountRef(id=41, name="Marie DUPONT", handle="a" * 64)
PAUL = AccountRef(id=42, name="Paul MARTIN", handle="b" * 64)


# the test kit's base config, without its [server] and [sessions]: each test says its own
BASE = BASE_CONFIG.replace('[server]\nmode = "demo"\n', "").replace("[sessions]\nsecure_cookies = false\n", "")


def config_text(public_url: str = ORIGIN, settings: str = "") -> str:
    server = '[server]\nmode = "demo"\n' + (f'public_url = "{public_url}"\n' if public_url else "")
    server += "[sessions]\nsecure_cookies = false\n"
    return server + (f"[plugins.settings.authenticator_passkey]\n{settings}\n" if settings else "")


@pytest.fixture
def host(
    database: Database, db_url: str, make_config: Callable[..., CaisseConfig], clock: FrozenClock
) -> Callable[..., PluginHost]:
    def factory(text: str = config_text()) -> PluginHost:
        config = make_config(text, database_url=db_url, enabled=["authenticator_passkey"], base=BASE)
        return PluginHost(config, PluginContext(config=config, database=database, clock=clock))

    return factory


@pytest.fixture
def passkey(host: Callable[..., PluginHost]) -> Passkey:
    found = host().authenticator("passkey")
    assert isinstance(found, Passkey)
    return found


async def enrol(passkey: Passkey, key: SoftPasskey, account: AccountRef = MARIE, label: str = "") -> int:
    challenge = await passkey.begin_enrolment(account)
    check = await passkey.finish_enrolment(
        account, challenge.state, {"credential": key.create(challenge.prompt.public["options"]), "label": label}
    )
    assert check.ok and check.account_id == account.id and check.enrolment_id, check
    return check.enrolment_id


async def answer(passkey: Passkey, key: SoftPasskey, account: AccountRef | None = MARIE, **how: Any) -> Any:
    challenge = await passkey.challenge(account)
    return await passkey.verify(
        account, challenge.state, {"credential": key.get(challenge.prompt.public["options"], **how)}
    )


# --- the hook ---------------------------------------------------------------------------------------------


def test_hook_guichet_authenticators(host: Callable[..., PluginHost]) -> None:
    plugin_host = host()
    found = plugin_host.authenticator("passkey")
    assert isinstance(found, Authenticator) and [a.name for a in plugin_host.authenticators()] == ["passkey"]
    check_authenticator(found, "authenticator_passkey")
    assert found.label_fr == "Clé d'accès" and found.rank == 30 and found.enrolment == "page"
    assert found.assurance.aal == 2 and found.assurance.phishing_resistant and found.assurance.replaces_password
    assert found.assurance.amr == ("swk", "user")
    assert isinstance(found.store, CredentialStore)


# --- enrolment --------------------------------------------------------------------------------------------


async def test_registration_options(passkey: Passkey) -> None:
    first = SoftPasskey(ORIGIN)
    await enrol(passkey, first)
    challenge = await passkey.begin_enrolment(MARIE)
    prompt = challenge.prompt
    assert prompt.widget == "webauthn" and prompt.ask_label and prompt.public["ceremony"] == "create"
    options = prompt.public["options"]
    json.dumps(options)  # handed to the page as it is
    assert options["rp"] == {"id": "monespace.msa.test", "name": "MSA Test"}
    assert options["user"] == {
        "id": b64url(MARIE.handle.encode()),
        "name": "Marie DUPONT",
        "displayName": "Marie DUPONT",
    }
    assert options["authenticatorSelection"]["residentKey"] == "required"
    assert options["authenticatorSelection"]["userVerification"] == "required"
    assert options["attestation"] == "none"
    assert [c["id"] for c in options["excludeCredentials"]] == [b64url(first.id)]
    assert options["challenge"] == challenge.state and len(challenge.state) >= 40


async def test_enrolment_keeps_the_public_key_and_a_label(passkey: Passkey, clock: FrozenClock) -> None:
    clock._now = dt.datetime(2026, 12, 6, 23, 30, tzinfo=dt.UTC)  # already the 7th in Paris
    named = await enrol(passkey, SoftPasskey(ORIGIN), label="  Téléphone   de Marie ")
    unnamed = await enrol(passkey, SoftPasskey(ORIGIN, synced=False))
    listed = await passkey.enrolments(MARIE)
    assert [(e.id, e.label) for e in listed] == [(named, "Téléphone de Marie"), (unnamed, "Clé d'accès du 07/12/2026")]
    stored = await passkey.store.of_account(MARIE.id, "passkey")
    assert stored[0].public["backed_up"] is True and stored[1].public["backed_up"] is False
    assert stored[0].public["transports"] == ["internal", "hybrid"] and stored[0].sealed == ""
    assert await passkey.enrolments(PAUL) == []


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ({"verified": False}, messages.NOT_CREATED),  # user verification missing
        ({"origin": "https://monespace.msa.test.evil.example"}, messages.OTHER_SITE),
        ({"rp_id": "evil.example"}, messages.NOT_CREATED),
    ],
    ids=["no-user-verification", "other-origin", "other-rp-id"],
)
async def test_an_enrolment_is_refused(passkey: Passkey, how: dict[str, Any], message: str) -> None:
    challenge = await passkey.begin_enrolment(MARIE)
    credential = SoftPasskey(ORIGIN).create(challenge.prompt.public["options"], **how)
    check = await passkey.finish_enrolment(MARIE, challenge.state, {"credential": credential})
    assert not check.ok and check.message_fr == message
    assert await passkey.enrolments(MARIE) == []


async def test_an_enrolment_answers_its_own_challenge_only(passkey: Passkey) -> None:
    old = await passkey.begin_enrolment(MARIE)
    new = await passkey.begin_enrolment(MARIE)
    credential = SoftPasskey(ORIGIN).create(old.prompt.public["options"])
    check = await passkey.finish_enrolment(MARIE, new.state, {"credential": credential})
    assert not check.ok and check.message_fr == messages.NOT_CREATED


async def test_the_same_passkey_is_not_enrolled_twice(passkey: Passkey) -> None:
    key = SoftPasskey(ORIGIN)
    await enrol(passkey, key)
    challenge = await passkey.begin_enrolment(PAUL)
    check = await passkey.finish_enrolment(
        PAUL, challenge.state, {"credential": key.create(challenge.prompt.public["options"])}
    )
    assert not check.ok and check.message_fr == messages.ALREADY


# --- login: second factor and whole login -----------------------------------------------------------------


async def test_a_second_factor(passkey: Passkey) -> None:
    key = SoftPasskey(ORIGIN)
    enrolled = await enrol(passkey, key)
    challenge = await passkey.challenge(MARIE)
    options = challenge.prompt.public["options"]
    assert challenge.prompt.widget == "webauthn" and challenge.prompt.public["ceremony"] == "get"
    assert options["rpId"] == "monespace.msa.test" and options["userVerification"] == "required"
    assert [c["id"] for c in options["allowCredentials"]] == [b64url(key.id)]
    check = await passkey.verify(MARIE, challenge.state, {"credential": key.get(options)})
    assert check.ok and check.account_id == MARIE.id and check.enrolment_id == enrolled
    [listed] = await passkey.enrolments(MARIE)
    assert listed.last_used_at is not None


async def test_a_whole_login_says_whose_passkey_it_was(passkey: Passkey) -> None:
    await enrol(passkey, SoftPasskey(ORIGIN))
    paul = SoftPasskey(ORIGIN)
    await enrol(passkey, paul, PAUL)
    challenge = await passkey.challenge(None)
    assert challenge.prompt.public["options"].get("allowCredentials", []) == []  # discoverable: the browser lists
    check = await passkey.verify(None, challenge.state, {"credential": paul.get(challenge.prompt.public["options"])})
    assert check.ok and check.account_id == PAUL.id


async def test_another_accounts_passkey_is_no_second_factor(passkey: Passkey) -> None:
    await enrol(passkey, SoftPasskey(ORIGIN))
    paul = SoftPasskey(ORIGIN)
    await enrol(passkey, paul, PAUL)
    check = await answer(passkey, paul, MARIE)
    assert not check.ok and check.message_fr == messages.UNKNOWN


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ({"verified": False}, messages.REFUSED),
        ({"rp_id": "evil.example"}, messages.REFUSED),
        ({"origin": "https://evil.example"}, messages.OTHER_SITE),
        ({"origin": "http://monespace.msa.test"}, messages.OTHER_SITE),
    ],
    ids=["no-user-verification", "other-rp-id", "other-origin", "plain-http"],
)
@pytest.mark.parametrize("account", [MARIE, None], ids=["second-factor", "whole-login"])
async def test_a_login_is_refused(
    passkey: Passkey, how: dict[str, Any], message: str, account: AccountRef | None
) -> None:
    key = SoftPasskey(ORIGIN)
    await enrol(passkey, key)
    check = await answer(passkey, key, account, **how)
    assert not check.ok and check.message_fr == message and check.account_id is None
    assert (await answer(passkey, key, account)).ok  # nothing was spent: the right answer still passes


async def test_an_answer_to_another_challenge_is_refused(passkey: Passkey) -> None:
    key = SoftPasskey(ORIGIN)
    await enrol(passkey, key)
    old = await passkey.challenge(MARIE)
    new = await passkey.challenge(MARIE)
    check = await passkey.verify(MARIE, new.state, {"credential": key.get(old.prompt.public["options"])})
    assert not check.ok and check.message_fr == messages.REFUSED


async def test_a_signature_by_another_key_is_refused(passkey: Passkey) -> None:
    key = SoftPasskey(ORIGIN)
    await enrol(passkey, key)
    forger = SoftPasskey(ORIGIN)
    forger.id, forger.user_handle = key.id, key.user_handle  # the same id, another private key
    assert not (await answer(passkey, forger)).ok


async def test_a_user_handle_of_another_account_is_refused(passkey: Passkey) -> None:
    key = SoftPasskey(ORIGIN)
    await enrol(passkey, key)
    key.user_handle = PAUL.handle.encode()
    check = await answer(passkey, key, None)
    assert not check.ok and check.message_fr == messages.REFUSED


# --- counters: a cloned authenticator ---------------------------------------------------------------------


async def test_a_counter_that_goes_up_passes_and_one_that_does_not_is_a_clone(
    passkey: Passkey, caplog: pytest.LogCaptureFixture
) -> None:
    key = SoftPasskey(ORIGIN)
    enrolled = await enrol(passkey, key)
    assert (await answer(passkey, key)).ok and (await answer(passkey, key)).ok  # 1, then 2
    [stored] = await passkey.store.of_account(MARIE.id, "passkey")
    assert stored.counter == 2
    for counter in (2, 1, 0):  # the same count again, or lower: a copy of the key is being used
        check = await answer(passkey, key, counter=counter)
        assert not check.ok and check.message_fr == messages.CLONED
    assert f"passkey {enrolled} of account {MARIE.id}" in caplog.text and key.user_handle.decode() not in caplog.text
    assert (await answer(passkey, key, counter=7)).ok


async def test_a_passkey_that_counts_nothing_passes_every_time(passkey: Passkey) -> None:
    key = SoftPasskey(ORIGIN, counting=False)  # synced passkeys send 0 every time
    await enrol(passkey, key)
    for _ in range(3):
        assert (await answer(passkey, key)).ok
    assert (await answer(passkey, key, counter=5)).ok  # it may start counting...
    check = await answer(passkey, key, counter=0)  # ...and then never go back to 0
    assert not check.ok and check.message_fr == messages.CLONED


# --- malformed input: a refusal, never an exception -------------------------------------------------------


def _broken(credential: str) -> list[str]:
    data = json.loads(credential)
    return [
        "",
        "not json",
        "[]",
        "null",
        json.dumps({}),
        json.dumps({**data, "response": None}),
        json.dumps({**data, "id": "x", "rawId": "x"}),
        json.dumps({**data, "rawId": 12}),
        json.dumps({**data, "type": "password"}),
        json.dumps({**data, "response": {**data["response"], "clientDataJSON": "!!!"}}),
        json.dumps({**data, "response": {**data["response"], "clientDataJSON": b64url(b"{")}}),
        json.dumps({**data, "response": {k: "AAAA" for k in data["response"]}}),
        json.dumps({**data, "response": {**data["response"], "signature": ""}}),
        credential[:-40],
    ]


async def test_malformed_answers_are_refused(passkey: Passkey) -> None:
    key = SoftPasskey(ORIGIN)
    await enrol(passkey, key)
    for account in (MARIE, None):
        challenge = await passkey.challenge(account)
        good = key.get(challenge.prompt.public["options"])
        for bad in _broken(good):
            check = await passkey.verify(account, challenge.state, {"credential": bad})
            assert not check.ok and check.message_fr, bad
        for state in ("", "!!", "AAAA"):
            assert not (await passkey.verify(account, state, {"credential": good})).ok
        assert not (await passkey.verify(account, challenge.state, {})).ok


async def test_malformed_enrolments_are_refused(passkey: Passkey) -> None:
    challenge = await passkey.begin_enrolment(MARIE)
    good = SoftPasskey(ORIGIN).create(challenge.prompt.public["options"])
    data = json.loads(good)
    for bad in [
        *_broken(good)[:9],
        json.dumps({**data, "response": {**data["response"], "attestationObject": "AAAA"}}),
    ]:
        check = await passkey.finish_enrolment(MARIE, challenge.state, {"credential": bad, "label": "x"})
        assert not check.ok and check.message_fr == messages.NOT_CREATED or check.message_fr == messages.OTHER_SITE
    for state in ("", "!!"):
        assert not (await passkey.finish_enrolment(MARIE, state, {"credential": good})).ok
    assert await passkey.enrolments(MARIE) == []


# --- removal ----------------------------------------------------------------------------------------------


async def test_removal(passkey: Passkey) -> None:
    key = SoftPasskey(ORIGIN)
    enrolled = await enrol(passkey, key)
    assert not await passkey.remove(PAUL, enrolled)  # not his
    assert await passkey.remove(MARIE, enrolled)
    assert not await passkey.remove(MARIE, enrolled)
    assert await passkey.enrolments(MARIE) == []
    check = await answer(passkey, key, None)
    assert not check.ok and check.message_fr == messages.UNKNOWN


# --- settings: the relying party, and what production refuses ---------------------------------------------


def _party(make_config: Callable[..., CaisseConfig], text: str, production: bool = False) -> Any:
    config = make_config(text, enabled=["authenticator_passkey"], base=BASE)
    if production:  # the mode alone: a production config's secrets are not what is tested here
        config = msgspec.structs.replace(config, server=msgspec.structs.replace(config.server, mode="production"))
    settings = PluginContext(config=config, database=None, clock=FrozenClock()).settings(  # type: ignore[arg-type]
        "authenticator_passkey", PasskeySettings
    )
    return relying_party(settings, config), settings_notes(settings, config)


def test_the_relying_party_comes_from_public_url(make_config: Callable[..., CaisseConfig]) -> None:
    party, notes = _party(make_config, config_text("https://MonEspace.msa.test:8443/"))
    assert (party.id, party.origins, party.name, party.any_local_port) == (
        "monespace.msa.test",
        ("https://monespace.msa.test:8443",),
        "MSA Test",
        False,
    )
    assert notes == []
    assert party.accepts("https://monespace.msa.test:8443") and not party.accepts("https://monespace.msa.test")


def test_settings_win_over_public_url(make_config: Callable[..., CaisseConfig]) -> None:
    party, notes = _party(
        make_config,
        config_text(
            settings='rp_id = "msa.test"\norigins = ["https://monespace.msa.test", "https://app.msa.test"]\n'
            'rp_name = "MSA"'
        ),
    )
    assert (party.id, party.origins, party.name) == (
        "msa.test",
        ("https://monespace.msa.test", "https://app.msa.test"),
        "MSA",
    )
    assert notes == []


def test_the_demo_uses_localhost_on_any_port(make_config: Callable[..., CaisseConfig]) -> None:
    party, notes = _party(make_config, config_text(public_url=""))
    assert party.id == "localhost" and party.any_local_port and notes == []
    assert party.accepts("http://localhost:8000") and party.accepts("http://localhost:51234")
    assert not party.accepts("http://127.0.0.1:8000") and not party.accepts("http://localhost.evil.example:80")


@pytest.mark.parametrize(
    ("text", "production", "key"),
    [
        (config_text(public_url="http://127.0.0.1:8000"), False, ".rp_id"),
        (config_text(settings='origins = ["http://monespace.msa.test"]'), True, ".origins[0]"),
        (config_text(public_url="http://monespace.msa.test"), True, "$.server.public_url"),
        (config_text(public_url=""), True, ".origins"),
        (config_text(settings='origins = ["https://evil.example"]'), False, ".origins[0]"),
        (config_text(public_url="http://localhost:8000"), True, None),
        (config_text(), True, None),
        (config_text(public_url="http://monespace.msa.test"), False, None),  # demo mode: http allowed
    ],
    ids=["ip-rp-id", "http-origin", "http-public-url", "no-origin", "origin-off-domain", "localhost", "https", "demo"],
)
def test_settings_notes(make_config: Callable[..., CaisseConfig], text: str, production: bool, key: str | None) -> None:
    _party_, notes = _party(make_config, text, production)
    if key is None:
        assert notes == []
    else:
        assert [n.key.removeprefix("$.plugins.settings.authenticator_passkey") for n in notes if n.refused] == [key]
