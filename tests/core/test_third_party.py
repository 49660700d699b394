"""Third parties' requests ("Autre"), on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest

from guichet.core.database import Database
from guichet.core.errors import StepError
from guichet.core.third_party import STRUCTURE_KINDS, create_request, list_requests

NOW = dt.datetime(2026, 3, 15, 9, 30, tzinfo=dt.UTC)
SIRET = "84216730600021"


async def make(database: Database, **changes: str) -> int:
    fields = dict(
        structure_kind="tiers_declarant",
        structure_name="  Cabinet  Compta  Sud ",
        siret="842 167 306 00021",
        contact_name="Anne Durand",
        email="Anne.Durand@Exemple.FR",
        phone="05 59 00 00 00",
    )
    fields.update(changes)
    return await create_request(database, now=NOW, **fields)


def test_structure_kinds_have_french_labels_and_instructions() -> None:
    assert list(STRUCTURE_KINDS) == ["tiers_declarant", "tiers_paiement", "partenaire_action_sociale"]
    assert STRUCTURE_KINDS["tiers_declarant"].label_fr == "Tiers déclarant (centre de gestion, expert-comptable...)"
    assert STRUCTURE_KINDS["tiers_paiement"].label_fr == "Tiers de paiement"
    assert STRUCTURE_KINDS["partenaire_action_sociale"].label_fr.startswith("Partenaire de l'action sociale")
    for kind in STRUCTURE_KINDS.values():
        assert "la caisse vous contactera" in kind.instructions_fr and "pièces" in kind.instructions_fr


async def test_create_list_and_decide(database: Database) -> None:
    first = await make(database)
    second = await make(database, structure_kind="tiers_paiement", phone="")
    assert second == first + 1
    pending = await list_requests(database, state="pending")
    assert [r.id for r in pending] == [first, second]
    row = pending[0]
    assert (row.structure_name, row.siret, row.email, row.phone) == (
        "Cabinet Compta Sud",
        SIRET,
        "Anne.Durand@exemple.fr",
        "+33559000000",
    )
    assert row.created_at == NOW and row.state == "pending" and row.decided_at is None
    assert pending[1].phone == ""

    assert len(await list_requests(database, state=None)) == 2
    assert await list_requests(database, state="approved") == []
    with pytest.raises(ValueError):
        await list_requests(database, state="lost")
    # deciding creates accounts and letters: tests/flows/test_third_party_approval.py


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"structure_kind": "banque"}, "structure_kind"),
        ({"siret": "84216730600022"}, "siret"),
        ({"siret": "８４２１６７３０６０００２１"}, "siret"),
        ({"email": "anne@"}, "email"),
        ({"email": "anne@exemple.fr\r\nBcc: x@y.z"}, "email"),
        ({"phone": "12"}, "phone"),
        ({"contact_name": "   "}, "contact_name"),
        ({"structure_name": "x" * 121}, "structure_name"),
    ],
)
async def test_bad_input_is_refused_and_stores_nothing(database: Database, changes: dict[str, str], field: str) -> None:
    with pytest.raises(StepError) as caught:
        await make(database, **changes)
    assert caught.value.field == field
    assert await list_requests(database, state=None) == []
