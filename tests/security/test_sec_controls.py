"""Controls of docs/security.md that no other attack covered, seen from the attacker's side: someone
who reads a database backup (password hashes, sealed messages, HMACs), and someone who gets markup
into a page (what htmx would run)."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import pytest

from guichet.core.keys import Keys
from tests.conftest import Portal
from tests.security.support import PASSWORD, make_account

# docs/security.md and web/static/VENDORED.md: htmx.org@2.0.11 dist/htmx.min.js
HTMX_SHA256 = "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717"


async def test_a_database_backup_holds_only_salted_argon2id_hashes_at_the_configured_cost(
    portal: Portal, demo_people: Any
) -> None:
    """Two accounts with the same password: two different argon2id hashes of the configured cost,
    neither holding the password; each verifies only its own password."""
    first = await make_account(portal)
    second = await make_account(portal, "exploitant", password=PASSWORD)
    argon2 = portal.services.config.passwords.argon2
    prefix = f"$argon2id$v=19$m={argon2.memory_kib},t={argon2.time_cost},p={argon2.parallelism}$"
    for row in (first, second):
        assert row["password_hash"].startswith(prefix), row["password_hash"][:40]
        assert PASSWORD not in row["password_hash"]
    assert first["password_hash"] != second["password_hash"], "unsalted: one hash cracks both"
    assert await portal.services.passwords.verify(first["password_hash"], PASSWORD)
    assert not await portal.services.passwords.verify(first["password_hash"], PASSWORD + "x")


async def test_htmx_is_the_vendored_build_and_runs_no_script_from_markup(portal: Portal) -> None:
    """Markup that reaches a page cannot make htmx evaluate code, run a swapped-in <script>, or
    call another site; the htmx served is the pinned, vendored file, from this site only."""
    r = await portal.get("/")
    found = re.search(r"<meta name=\"htmx-config\" content='([^']+)'>", r.text)
    assert found, "no htmx-config meta"
    config = json.loads(found.group(1))
    assert config["allowEval"] is False and config["allowScriptTags"] is False
    assert config["selfRequestsOnly"] is True and config["historyCacheSize"] == 0
    sources = re.findall(r'<script[^>]*\bsrc="([^"]+)"', r.text)
    assert sources and all(src.startswith("/static/") for src in sources), sources
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", r.text), "an inline script"
    [htmx] = [src for src in sources if "htmx" in src]
    served = await portal.client.get(htmx)
    assert served.status_code == 200 and hashlib.sha256(served.content).hexdigest() == HTMX_SHA256


def test_keys_are_one_per_use_and_a_retired_key_opens_nothing() -> None:
    """A value made for one use (a code's HMAC) is useless for another (a CSRF token); during a
    rotation the previous key still verifies and opens; once retired, what it made is refused."""
    old, new = "ancienne-clé-" + "0" * 32, "nouvelle-clé-" + "1" * 32
    before = Keys(old)
    rotating = Keys(new, [old])
    after = Keys(new)
    code_hmac = before.hmac("code", "123456")
    assert before.hmac("csrf", "123456") != code_hmac
    assert not before.matches("csrf", "123456", code_hmac)
    sealed = before.seal(b"code 123456")
    assert rotating.matches("code", "123456", code_hmac) and rotating.unseal(sealed) == b"code 123456"
    assert rotating.hmac("code", "123456") != code_hmac, "new values are made with the new key"
    assert not after.matches("code", "123456", code_hmac)
    with pytest.raises(ValueError):
        after.unseal(sealed)
