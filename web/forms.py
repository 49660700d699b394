"""Form bodies as plain dicts of trimmed strings (duplicates were refused in web.http.before_request)."""

from __future__ import annotations

from typing import Any

from litestar import Request

MAX_FIELD = 2000


async def form_of(request: Request[Any, Any, Any]) -> dict[str, str]:
    form = await request.form()
    values: dict[str, str] = {}
    for key in form.keys():
        value = form.get(key)
        if isinstance(value, str):
            values[key[:64]] = value[:MAX_FIELD]
    return values
