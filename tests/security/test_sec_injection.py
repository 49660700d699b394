"""Input hygiene: names with HTML and htmx attributes are escaped in pages, fragments, emails and
letters; no CR/LF reaches a mail header; ASCII digits only (NIR, code, amount); emails NFKC + IDNA;
passwords are neither truncated nor compared without NFKC."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from email.utils import getaddresses
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import msgspec
import pytest
from pypdf import PdfReader

from guichet.core.errors import DeliveryError
from guichet.core.identifiers import nir_key
from guichet.core.structs import Message, Recipient
from guichet.plugins.registry_tables.tables import create_tables as create_registry_tables
from guichet.plugins.registry_tables.tables import tables_of as registry_tables_of
from tests.conftest import Portal
from tests.security.support import (
    PASSWORD,
    expect_event,
    kinds,
    login,
    make_account,
    messages,
    password_step,
    person,
    remember,
    snapshot,
    text,
    where,
)

pytestmark = pytest.mark.asyncio
HOSTILE_NIR = "1850575123456"
remember(HOSTILE_NIR, HOSTILE_NIR + nir_key(HOSTILE_NIR))
HOSTILE_NAMES = [
    ("<script>alert(1)</script>", "<script>"),
    ('"><img src=x onerror=alert(1)>', "<img src=x"),
    ("' hx-get='/deconnexion' hx-trigger='load", "hx-get='/deconnexion'"),
    ('" hx-on:htmx:load="alert(1)" x="', 'hx-on:htmx:load="alert(1)"'),
    ('x" hx-post="/deconnexion" hx-trigger="every 1s', 'hx-post="/deconnexion"'),
    ("{{ 7*7 }}{% if 1 %}JINJA{% endif %}", "49JINJA"),
]


async def hostile_person(portal: Portal, last_name: str) -> Any:
    """A registry person whose name is an attack; returns a DemoPerson-like record to register with."""
    await create_registry_tables(portal.services.database)
    t = registry_tables_of(portal.services.database).RegistryPerson
    await t.insert(
        t(
            nir=HOSTILE_NIR,
            last_name=last_name,
            first_name=f"Eve {last_name}",
            birth_date=dt.date(1985, 5, 1),
            address=f"{last_name}\n1 RUE DU TEST\n75001 PARIS",
            email="eve@demo.invalid",
            mobile=None,
            vitale_serial="9876543210",
            health_affiliated=True,
        )
    ).run()
    who = person("particulier_vitale")
    return msgspec.structs.replace(
        who,
        identifier=HOSTILE_NIR,
        last_name=last_name,
        first_name=f"Eve {last_name}",
        birth_date=dt.date(1985, 5, 1),
        email="eve@demo.invalid",
        mobile="",
        answer="9876543210",
    )


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))


def assert_inert(page: str, raw: str, where_: str) -> None:
    """The hostile text is data: no new element, no event handler, no htmx behaviour came from it."""
    assert raw not in page, f"{where_}: {raw!r} is in the page as markup"
    parser = _Tags()
    parser.feed(page)
    for tag, attrs in parser.tags:
        assert tag != "img" and not (tag == "script" and "src" not in attrs), f"{where_}: an injected <{tag}>"
        for name, value in attrs.items():
            assert not name.startswith(("on", "hx-on")) and name != "x", f"{where_}: an injected {name} on <{tag}>"
            assert not (name == "hx-trigger" and value in ("load", "every 1s")), f"{where_}: hx-trigger={value}"
            assert not (name == "hx-get" and "deconnexion" in value), f"{where_}: hx-get={value}"
            assert not (name == "hx-post" and value == "/deconnexion" and tag != "button"), f"{where_}: <{tag}> posts"


def message_of(row: dict[str, Any]) -> Message:
    return Message(
        id=row["id"],
        channel=row["channel"],
        template=row["template"],
        recipient=msgspec.convert(row["recipient"], Recipient),
        payload=row["payload"],
        caisse_name="MSA Test",
        created_at=dt.datetime(2026, 3, 1, tzinfo=dt.UTC),
    )


@pytest.mark.parametrize("name,raw", HOSTILE_NAMES, ids=["script", "img", "hx-get", "hx-on", "hx-post", "jinja"])
async def test_hostile_names_are_inert_in_pages_fragments_emails_and_letters(
    portal: Portal, name: str, raw: str, tmp_path: Path
) -> None:
    who = await hostile_person(portal, name)
    await portal.get("/inscription/statut")
    await portal.post("/inscription/statut", {"status": who.status})
    await portal.post("/inscription/identifiant", {"identifier": who.identifier})
    await portal.post(
        "/inscription/coordonnees",
        {"last_name": name, "first_name": who.first_name, "birth_date": "01/05/1985", "email": who.email, "mobile": ""},
    )
    for htmx in (False, True):  # what was typed, shown again
        r = await portal.get("/inscription/coordonnees", htmx=htmx)
        assert_inert(r.text, raw, "the contact step")
    r = await portal.post("/inscription/question", {"question": "vitale", "answer": who.answer})
    r = await portal.post("/inscription/canal", {"channel": "email"})
    r = await portal.post("/inscription/code", {"code": await portal.last_code("registration_code")})
    assert where(r) == "/inscription/termine"
    [temporary] = await portal.outbox("temporary_password")
    await login(portal, HOSTILE_NIR, temporary["payload"]["password"])
    await portal.get("/changement-mot-de-passe")
    r = await portal.post("/changement-mot-de-passe", {"new_password": PASSWORD, "confirm_password": PASSWORD})
    assert where(r) == "/mot-de-passe-modifie", messages(r)
    await portal.get("/confirmation-coordonnees")
    await portal.post("/confirmation-coordonnees", {"action": "confirmer"})
    for path in (
        "/espace-prive",
        "/mon-compte",
        "/mon-compte/coordonnees",
        "/mon-compte/email",
        "/mon-compte/coordonnees?modifier=email",
    ):
        for htmx in (False, True):
            r = await portal.get(path, htmx=htmx)
            assert r.status_code == 200, path
            assert_inert(r.text, raw, path)
            assert name in text(r) or path != "/espace-prive", "the name is shown, escaped"
    # the emails: escaped in HTML, one recipient, and the text part as typed
    channel = portal.services.host.channel("email")
    for row in await portal.outbox():
        if row["channel"] != "email":
            continue
        mail = email.message_from_bytes(channel.build(message_of(row)).as_bytes(), policy=email.policy.default)
        assert [addr for _, addr in getaddresses([str(mail["To"])])] == [row["recipient"]["email"]]
        assert mail["Bcc"] is None and mail["Cc"] is None
        html_part = mail.get_body(("html",)).get_content()
        assert_inert(html_part, raw, f"the {row['template']} email")
        assert name in mail.get_body(("plain",)).get_content()
    # the letter: the name printed as it is, nothing interpreted
    [letter] = await portal.outbox("registration_letter")
    postal = portal.services.host.channel("postal")
    postal.spool = tmp_path
    await postal.send(message_of(letter))
    printed = "\n".join(page.extract_text() for page in PdfReader(next(tmp_path.glob("*.pdf"))).pages)
    assert name[:38].split()[0] in printed
    await expect_event(portal, "registration.completed", channel="email")
    await expect_event(portal, "contacts.confirmed")


@pytest.mark.parametrize(
    "name",
    [
        "Eve\r\nBcc: victim@evil.example",
        "Eve\nX-Injected: 1",
        "Eve\rTo: a@evil.example",
        "Eve\u0085Bcc: x@evil.example",
        "Eve\u2028Bcc: x@evil.example",
    ],
    ids=["crlf", "lf", "cr", "nel", "line-separator"],
)
async def test_no_line_break_from_a_name_reaches_a_mail_header(portal: Portal, name: str, demo_people: Any) -> None:
    who = person("particulier_vitale")
    await portal.get("/inscription/statut")
    await portal.post("/inscription/statut", {"status": who.status})
    await portal.post("/inscription/identifiant", {"identifier": who.nir_with_key})
    r = await portal.post(
        "/inscription/coordonnees",
        {"last_name": who.last_name, "first_name": name, "birth_date": "14/05/1985", "email": who.email, "mobile": ""},
    )
    if r.status_code == 303:  # accepted: the line break became a space
        await portal.post("/inscription/question", {"question": who.question, "answer": who.answer})
        await portal.post("/inscription/canal", {"channel": "email"})
        [row] = await portal.outbox("registration_code")
        assert not any(c in row["recipient"]["name"] for c in "\r\n\x85\u2028")
        raw = portal.services.host.channel("email").build(message_of(row)).as_bytes()
        header_lines = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
        assert not any(line.split(b":")[0].strip().lower() in (b"bcc", b"cc", b"x-injected") for line in header_lines)
        assert sum(line.startswith(b"To:") for line in header_lines) == 1
        mail = email.message_from_bytes(raw, policy=email.policy.default)
        assert [addr for _, addr in getaddresses([str(mail["To"])])] == [who.email]
        await expect_event(portal, "code.sent", purpose="registration")
    else:
        assert r.status_code == 422 and await portal.outbox() == []
        assert "code.sent" not in await kinds(portal)
    with pytest.raises(DeliveryError):  # and the channel itself refuses a raw line break
        portal.services.host.channel("email").build(
            Message(
                id=1,
                channel="email",
                template="login_code",
                recipient=Recipient(name="Eve\r\nBcc: x@evil.example", email="eve@demo.invalid"),
                payload={"code": "123456", "lifetime_minutes": 10},
                caisse_name="MSA Test",
                created_at=dt.datetime(2026, 3, 1, tzinfo=dt.UTC),
            )
        )


@pytest.mark.parametrize(
    "typed",
    [
        "eve@demo.invalid\r\nBcc: x@evil.example",
        "eve@demo.invalid\nBcc: x@evil.example",
        "eve@demo.invalid, x@evil.example",
        "Eve <eve@demo.invalid>",
    ],
)
async def test_an_email_address_cannot_smuggle_a_header_or_a_second_recipient(
    portal: Portal, typed: str, demo_people: Any
) -> None:
    who = person("particulier_vitale")
    await portal.get("/inscription/statut")
    await portal.post("/inscription/statut", {"status": who.status})
    await portal.post("/inscription/identifiant", {"identifier": who.nir_with_key})
    before = await snapshot(portal)
    r = await portal.post(
        "/inscription/coordonnees",
        {
            "last_name": who.last_name,
            "first_name": who.first_name,
            "birth_date": "14/05/1985",
            "email": typed,
            "mobile": "",
        },
    )
    assert r.status_code == 422 and "Saisissez une adresse email valide" in messages(r)[0]
    assert await snapshot(portal) == before and await kinds(portal) == []


# --- ASCII digits only; emails normalised ------------------------------------------------------------------

FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")
ARABIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


@pytest.mark.parametrize("digits", [FULLWIDTH, ARABIC], ids=["fullwidth", "arabic-indic"])
async def test_look_alike_digits_in_a_nir_are_refused_everywhere(
    portal: Portal, digits: dict[int, str], demo_people: Any
) -> None:
    account_row = await make_account(portal)
    look_alike = person().nir_with_key.translate(digits)
    r = await password_step(portal, look_alike, PASSWORD)
    assert r.status_code == 422 and "login.password_ok" not in await kinds(portal)
    await portal.post("/inscription/statut", {"status": "particulier"})
    r = await portal.post("/inscription/identifiant", {"identifier": look_alike})
    assert r.status_code == 422 and "uniquement des chiffres" in messages(r)[0]
    r = await portal.post("/mot-de-passe-oublie/identifiant", {"identifier": look_alike})
    assert r.status_code == 422 and await portal.outbox() == []
    await expect_event(portal, "login.failed", account_id=None, reason="bad_credentials")
    assert account_row["email"] not in [m["recipient"]["email"] for m in await portal.outbox()]


@pytest.mark.parametrize("answer", ["４１２,３７", "٤١٢,٣٧", "412,３７", "4１2,37"])
async def test_look_alike_digits_in_an_amount_are_refused_without_counting_an_answer(
    portal: Portal, answer: str, demo_people: Any
) -> None:
    who = person("particulier_paiement")
    await portal.get("/inscription/statut")
    await portal.post("/inscription/statut", {"status": who.status})
    await portal.post("/inscription/identifiant", {"identifier": who.nir_with_key})
    await portal.post(
        "/inscription/coordonnees",
        {
            "last_name": who.last_name,
            "first_name": who.first_name,
            "birth_date": who.birth_date.strftime("%d/%m/%Y"),
            "email": who.email,
            "mobile": "",
        },
    )
    before = await snapshot(portal)
    r = await portal.post("/inscription/question", {"question": "payment", "answer": answer})
    assert r.status_code == 422 and messages(r) == ["Saisissez le montant en euros, par exemple 1\u00a0234,50."]
    assert await snapshot(portal) == before
    assert (
        await portal.services.database.t.RateCounter.select()
        .where(portal.services.database.t.RateCounter.key.like("identity:%"))
        .run()
        == []
    )
    r = await portal.post("/inscription/question", {"question": "payment", "answer": who.answer})
    assert where(r) == "/inscription/canal", "the ASCII answer still works"
    await expect_event(portal, "identity.succeeded", question="payment")


@pytest.mark.parametrize(
    "typed,stored",
    [
        ("julien.lefebvre@dеmo.invalid", "julien.lefebvre@" + "dеmo.invalid".encode("idna").decode()),  # Cyrillic е
        ("julien.lefebvre@ｄｅｍｏ．ｉｎｖａｌｉｄ", "julien.lefebvre@demo.invalid"),  # full width: NFKC
        ("JULIEN.LEFEBVRE@DEMO.INVALID", "JULIEN.LEFEBVRE@demo.invalid"),
        ("julien.lefebvre@bücher.example", "julien.lefebvre@xn--bcher-kva.example"),
    ],
    ids=["cyrillic-domain", "fullwidth", "upper-case-domain", "idn"],
)
async def test_email_domains_are_stored_nfkc_and_idna(
    portal: Portal, typed: str, stored: str, demo_people: Any
) -> None:
    assert stored.isascii()
    who = person("particulier_vitale")
    await portal.get("/inscription/statut")
    await portal.post("/inscription/statut", {"status": who.status})
    await portal.post("/inscription/identifiant", {"identifier": who.nir_with_key})
    r = await portal.post(
        "/inscription/coordonnees",
        {
            "last_name": who.last_name,
            "first_name": who.first_name,
            "birth_date": "14/05/1985",
            "email": typed,
            "mobile": "",
        },
    )
    assert where(r) == "/inscription/question", messages(r)
    await portal.post("/inscription/question", {"question": who.question, "answer": who.answer})
    await portal.post("/inscription/canal", {"channel": "email"})
    [row] = await portal.outbox("registration_code")
    assert row["recipient"]["email"] == stored
    assert stored != "julien.lefebvre@demo.invalid" or "demo.invalid" in typed.lower() or "ｄｅｍｏ" in typed
    await expect_event(portal, "code.sent", purpose="registration", channel="email")


async def test_a_mixed_script_local_part_is_refused(portal: Portal, demo_people: Any) -> None:
    who = person("particulier_vitale")
    await portal.post("/inscription/statut", {"status": who.status})
    await portal.post("/inscription/identifiant", {"identifier": who.nir_with_key})
    r = await portal.post(
        "/inscription/coordonnees",
        {
            "last_name": who.last_name,
            "first_name": who.first_name,
            "birth_date": "14/05/1985",
            "email": "jul\u0456en@demo.invalid",
            "mobile": "",
        },
    )
    assert r.status_code == 422
    assert await kinds(portal) == []


# --- passwords: no truncation, NFKC ------------------------------------------------------------------------


async def change_password(portal: Portal, current: str, new: str) -> Any:
    await portal.get("/mon-compte/mot-de-passe")
    remember(new)
    return await portal.post(
        "/mon-compte/mot-de-passe", {"current_password": current, "new_password": new, "confirm_password": new}
    )


async def test_long_passwords_are_never_silently_truncated(portal: Portal, clock: Any) -> None:
    account_row = await make_account(portal)
    await login(portal, person().identifier)
    longest = ("Vert-Galet-42-Nuage!" * 7)[:128]
    r = await change_password(portal, PASSWORD, ("Vert-Galet-42-Nuage!" * 10)[:200])
    assert r.status_code == 422 and "ne doit pas dépasser 128 caractères" in text(r), "a long password was cut"
    r = await change_password(portal, PASSWORD, longest)
    assert where(r) == "/mot-de-passe-modifie", messages(r)
    await portal.post("/deconnexion", {})
    for wrong in (longest + "x" * 72, longest[:127], longest[:72], longest + "\u200b"):
        clock.advance(seconds=60)
        remember(wrong)
        r = await password_step(portal, person().identifier, wrong)
        assert r.status_code == 422, f"a password of {len(wrong)} characters opened a {len(longest)}-character one"
    clock.advance(minutes=20)
    r = await password_step(portal, person().identifier, longest)
    assert where(r) == "/connexion/code"
    r = await password_step(portal, person().identifier, longest + "y" * 1900)  # under the body limit
    assert r.status_code == 422
    await expect_event(portal, "password.changed", account_id=account_row["id"])
    await expect_event(portal, "login.failed", account_id=account_row["id"], reason="bad_credentials")


@pytest.mark.parametrize(
    "stored,typed",
    [
        ("ﬁlet-Vert-42-Nuage!", "filet-Vert-42-Nuage!"),
        ("filet-Vert-42-Nuage!", "ﬁlet-Vert-42-Nuage!"),
        ("Ｂleu-Galet-42-Nuage！", "Bleu-Galet-42-Nuage!"),
        ("Cafe\u0301-Vert-42-Nuage!", "Café-Vert-42-Nuage!"),
    ],
    ids=["ligature-stored", "ligature-typed", "fullwidth", "combining-accent"],
)
async def test_passwords_are_compared_after_nfkc(portal: Portal, stored: str, typed: str) -> None:
    account_row = await make_account(portal)
    await login(portal, person().identifier)
    r = await change_password(portal, PASSWORD, stored)
    assert where(r) == "/mot-de-passe-modifie", messages(r)
    await portal.post("/deconnexion", {})
    remember(typed)
    r = await password_step(portal, person().identifier, typed)
    assert where(r) == "/connexion/code", "the same password typed on another keyboard was refused"
    await expect_event(portal, "login.password_ok", count=2, account_id=account_row["id"])


async def test_a_new_password_equal_to_the_current_one_after_nfkc_is_refused(portal: Portal) -> None:
    account_row = await make_account(portal, password="ﬁlet-Vert-42-Nuage!")
    await login(portal, person().identifier, "ﬁlet-Vert-42-Nuage!")
    r = await change_password(portal, "filet-Vert-42-Nuage!", "filet-Vert-42-Nuage!")
    assert r.status_code == 422 and "différent de l'actuel" in text(r)
    await expect_event(portal, "login.succeeded", account_id=account_row["id"])
    assert "password.changed" not in await kinds(portal)
