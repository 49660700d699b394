"""Pages behind login: personalisation, contact confirmation, espace privé, Mon compte.

Each handler first calls ``require_account``: a session that has passed only the password step, or whose
account's credentials changed since, reaches none of them (htmx fragments included); it raises
``LeaveFor``, which the app turns into a redirect.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post

from guichet.core.flows import account as flow
from guichet.core.flows.engine import StepResult
from guichet.core.identifiers import format_phone
from guichet.core.sessions import FULL
from guichet.web.forms import form_of
from guichet.web.http import LeaveFor, client_address, go, render, services_of, session_of, step_status
from guichet.web.oidc.routes import end_other_logins

# a page asked for while the password or the contacts come first: the page they lead to says why
TEMPORARY, UNCONFIRMED = "mot-de-passe-temporaire", "coordonnees-a-confirmer"
WHY = {
    TEMPORARY: "Votre mot de passe est temporaire : personnalisez-le avant d'accéder à Mon espace privé.",
    UNCONFIRMED: "Confirmez vos coordonnées avant d'accéder à Mon espace privé.",
}
HOME_URL = "/espace-prive"
FORCED_PATHS = {"/changement-mot-de-passe", "/mot-de-passe/force", "/deconnexion"}


async def require_account(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The account of a fully logged-in session; otherwise raises LeaveFor where the browser must go."""
    services = services_of(request)
    session = session_of(request)
    if session.data is None or session.data.level != FULL:
        raise LeaveFor("/connexion")
    account = await flow.current_account(services, session)
    if account is None or account["credentials_version"] != session.data.credentials_version:
        session.clear()
        raise LeaveFor("/connexion")
    path = request.url.path
    if account["password_is_temporary"] and path not in FORCED_PATHS:
        raise LeaveFor(f"/changement-mot-de-passe?raison={TEMPORARY}")
    if (
        not account["password_is_temporary"]
        and account["contacts_confirmed_at"] is None
        and not path.startswith(("/confirmation-coordonnees", "/mot-de-passe-modifie", "/mot-de-passe/force"))
    ):
        raise LeaveFor(f"/confirmation-coordonnees?raison={UNCONFIRMED}")
    if (
        session.data.must_enrol
        and not account["password_is_temporary"]
        and account["contacts_confirmed_at"] is not None
        and not path.startswith(("/mon-compte/securite", "/mot-de-passe-modifie"))
    ):
        raise LeaveFor("/mon-compte/securite")
    return account


async def home_page(request: Request[Any, Any, Any], account: dict[str, Any], *, in_place: bool = False) -> Any:
    """Mon espace privé. ``in_place``: the answer to a login's last step sent with htmx, the whole page
    swapped in and its address pushed: on a slow line the browser waits for one answer, not two."""
    provider = getattr(request.app.state, "oidc", None)
    services = await provider.services_for(account["id"]) if provider is not None else []
    return render(
        request,
        "pages/espace_prive.html",
        {"account": account, "services": services},
        title=f"Mon espace privé — {services_of(request).config.caisse.name}",
        push_url=HOME_URL if in_place else None,
        whole_page=in_place,
    )


async def _change_password(request: Request[Any, Any, Any], account: dict[str, Any], *, forced: bool) -> Any:
    """Personalisation of a temporary password (forced) or a change from Mon compte (current password asked)."""
    form = await form_of(request)
    result = await flow.change_password(
        services_of(request),
        session_of(request),
        account,
        form,
        client=client_address(request),
        require_current=not forced,
    )
    if result.errors:
        heading = "Changement de votre mot de passe" if forced else "Modifier mon mot de passe"
        return render(
            request,
            "steps/account/changement.html",
            {"errors": result.errors, "forced": forced},
            status=422,
            title=_title(request, heading),
        )
    response = go(request, "/mot-de-passe-modifie")
    response.background = await end_other_logins(request, account["id"])
    return response


def _title(request: Request[Any, Any, Any], heading: str) -> str:
    return f"{heading} — Mon espace privé — {services_of(request).config.caisse.name}"


def _contacts(account: dict[str, Any]) -> list[dict[str, Any]]:
    labels = {
        "email": "Votre adresse email est",
        "mobile": "Votre numéro de téléphone portable est",
        "landline": "Votre numéro de téléphone fixe est",
        "fax": "Votre numéro de fax est",
    }
    shown = []
    for field, label in labels.items():
        value = account.get(field) or ""
        shown.append(
            {
                "field": field,
                "label": label,
                "value": format_phone(value) if value and field != "email" else value,
                "unproven": bool(value) and field in flow.PROVEN_CONTACTS and not account[f"{field}_verified"],
            }
        )
    return shown


CONFIRMATION_URL = "/confirmation-coordonnees"
MY_CONTACTS_URL = "/mon-compte/coordonnees"


def _editable(field: str | None) -> str | None:
    return field if field in flow.CONTACT_FIELDS else None


def _contacts_page(
    request: Request[Any, Any, Any],
    account: dict[str, Any],
    *,
    confirming: bool,
    editing: str | None,
    result: StepResult | None = None,
    template: str = "steps/account/coordonnees.html",
    delivery: dict[str, str] | None = None,
) -> Any:
    session = session_of(request)
    url = CONFIRMATION_URL if confirming else MY_CONTACTS_URL
    context = {
        "contacts": _contacts(account),
        "editing": editing,
        "errors": result.errors if result else {},
        "values": result.values if result else {},
        "notice": result.notice if result else "",
        "pending": session.data.pending_contact if session.data else {},
        "confirming": confirming,
        "contacts_url": url,
        "length": services_of(request).host.code_policy("contact_change").length,
        **(delivery or {}),
    }
    heading = "Confirmation de vos coordonnées" if confirming else "Mes coordonnées"
    return render(
        request,
        template,
        context,
        status=step_status(result) if result else 200,
        title=_title(request, heading),
        push_url=url,
    )


async def _contacts_action(
    request: Request[Any, Any, Any], account: dict[str, Any], form: dict[str, str], *, confirming: bool
) -> Any:
    """ "modifier" a contact (an email or mobile with the current password), or the "code" sent to a new one."""
    services = services_of(request)
    session = session_of(request)
    client = client_address(request)
    action = form.get("action", "")
    if action == "modifier":
        field = form.get("field", "")
        result = await flow.start_contact_change(
            services,
            session,
            account,
            field,
            form.get("value", ""),
            client=client,
            current_password=form.get("current_password") or None,
        )
        account = await flow.current_account(services, session) or account
        if result.step == "coordonnees-code":
            return _contacts_page(
                request,
                account,
                confirming=confirming,
                editing=None,
                result=result,
                template="steps/account/coordonnees_code.html",
            )
        return _contacts_page(
            request, account, confirming=confirming, editing=_editable(field) if result.errors else None, result=result
        )
    if action == "code":
        result = await flow.confirm_contact_change(services, session, account, form, client=client)
        account = await flow.current_account(services, session) or account
        if result.step == "coordonnees-code":  # still waiting: a code the server refused is told
            return _contacts_page(
                request,
                account,
                confirming=confirming,
                editing=None,
                result=result,
                template="steps/account/coordonnees_code.html",
                delivery=await flow.contact_code_delivery(services, session),
            )
        return _contacts_page(request, account, confirming=confirming, editing=None, result=result)
    return _contacts_page(request, account, confirming=confirming, editing=None)


class AccountController(Controller):
    path = "/"

    # --- forced personalisation of a temporary password --------------------------------------------

    @get("/changement-mot-de-passe")
    async def personalise(self, request: Request[Any, Any, Any], raison: str | None = None) -> Any:
        account = await require_account(request)
        if not account["password_is_temporary"]:
            return go(request, "/mon-compte/mot-de-passe")
        return render(
            request,
            "steps/account/changement.html",
            {"errors": {}, "forced": True, "notice": WHY.get(raison or "", "")},
            title=_title(request, "Changement de votre mot de passe"),
        )

    @post("/changement-mot-de-passe")
    async def personalise_submit(self, request: Request[Any, Any, Any]) -> Any:
        account = await require_account(request)
        if not account["password_is_temporary"]:
            return go(request, "/mon-compte/mot-de-passe")
        return await _change_password(request, account, forced=True)

    @post("/mot-de-passe/force")
    async def meter(self, request: Request[Any, Any, Any]) -> Any:
        try:
            account = await require_account(request)
        except LeaveFor:
            if not session_of(request).cleared:
                raise
            # a meter request still in flight when the password change it measured rotated the session
            # (its credentials are older than the account's): nothing to show, and no navigation away
            # from the page the change led to
            return Response(content=b"", status_code=204)
        form = await form_of(request)
        check = flow.strength(services_of(request), account, form.get("new_password", ""))
        return render(
            request, "components/meter.html", {"check": check, "typed": bool(form.get("new_password"))}, title=""
        )

    @get("/mot-de-passe-modifie")
    async def changed(self, request: Request[Any, Any, Any]) -> Any:
        account = await require_account(request)
        return render(
            request,
            "steps/account/modifie.html",
            {"confirm_next": account["contacts_confirmed_at"] is None},
            title=_title(request, "Confirmation"),
        )

    # --- contact details: the first login's confirmation, then Mon compte's "Mes coordonnées" ------

    @get(CONFIRMATION_URL)
    async def contacts(
        self, request: Request[Any, Any, Any], modifier: str | None = None, raison: str | None = None
    ) -> Any:
        account = await require_account(request)
        if not flow.confirmation_due(account):
            return go(request, MY_CONTACTS_URL)
        why = StepResult(step="coordonnees", notice=WHY[raison]) if raison in WHY else None
        return _contacts_page(request, account, confirming=True, editing=_editable(modifier), result=why)

    @post(CONFIRMATION_URL)
    async def contacts_submit(self, request: Request[Any, Any, Any]) -> Any:
        account = await require_account(request)
        if not flow.confirmation_due(account):
            return go(request, MY_CONTACTS_URL)
        form = await form_of(request)
        if form.get("action") == "confirmer":
            await flow.confirm_contacts(services_of(request), account, client=client_address(request))
            return go(request, HOME_URL)
        return await _contacts_action(request, account, form, confirming=True)

    @get(MY_CONTACTS_URL)
    async def my_contacts(self, request: Request[Any, Any, Any], modifier: str | None = None) -> Any:
        account = await require_account(request)
        return _contacts_page(request, account, confirming=False, editing=_editable(modifier))

    @post(MY_CONTACTS_URL)
    async def my_contacts_submit(self, request: Request[Any, Any, Any]) -> Any:
        account = await require_account(request)
        return await _contacts_action(request, account, await form_of(request), confirming=False)

    # --- the espace privé and Mon compte -----------------------------------------------------------

    @get(HOME_URL)
    async def home(self, request: Request[Any, Any, Any]) -> Any:
        account = await require_account(request)
        session = session_of(request)
        if session.data is not None and session.data.return_to:  # a service waits for this login (web/oidc)
            target, session.data.return_to = session.data.return_to, ""
            session.dirty = True
            return go(request, target)
        return await home_page(request, account)

    @get("/mon-compte")
    async def settings(self, request: Request[Any, Any, Any]) -> Any:
        account = await require_account(request)
        return await self._settings_page(request, account)

    async def _settings_page(self, request: Request[Any, Any, Any], account: dict[str, Any], notice: str = "") -> Any:
        browsers = await flow.trusted_browsers(services_of(request), account)
        return render(
            request,
            "pages/mon_compte.html",
            {"account": account, "browsers": browsers, "notice": notice, "contacts": _contacts(account)},
            title=_title(request, "Mon compte"),
        )

    @post("/mon-compte/navigateurs/{browser_id:int}/revoquer")
    async def revoke(self, request: Request[Any, Any, Any], browser_id: int) -> Any:
        account = await require_account(request)
        done = await flow.revoke_browser(services_of(request), account, browser_id, client=client_address(request))
        return await self._settings_page(
            request, account, "Ce navigateur n'est plus un navigateur de confiance." if done else ""
        )

    @get("/mon-compte/mot-de-passe")
    async def password(self, request: Request[Any, Any, Any]) -> Any:
        await require_account(request)
        return render(
            request,
            "steps/account/changement.html",
            {"errors": {}, "forced": False},
            title=_title(request, "Modifier mon mot de passe"),
        )

    @post("/mon-compte/mot-de-passe")
    async def password_submit(self, request: Request[Any, Any, Any]) -> Any:
        account = await require_account(request)
        return await _change_password(request, account, forced=False)

    @get("/mon-compte/email")
    async def email(self, request: Request[Any, Any, Any]) -> Any:
        account = await require_account(request)
        return render(
            request,
            "steps/account/email.html",
            {"errors": {}, "values": {}, "account": account},
            title=_title(request, "Modifier mon email"),
        )

    @post("/mon-compte/email")
    async def email_submit(self, request: Request[Any, Any, Any]) -> Any:
        account = await require_account(request)
        services = services_of(request)
        session = session_of(request)
        form = await form_of(request)
        client = client_address(request)
        title = _title(request, "Modifier mon email")
        if form.get("action") == "code":
            result = await flow.confirm_contact_change(services, session, account, form, client=client)
            if result.errors:
                return render(
                    request,
                    "steps/account/email_code.html",
                    {
                        "errors": result.errors,
                        "pending": session.data.pending_contact if session.data else {},
                        "length": services.host.code_policy("contact_change").length,
                        **await flow.contact_code_delivery(services, session),
                    },
                    status=422,
                    title=title,
                )
            fresh = await flow.current_account(services, session) or account
            return await self._settings_page(request, fresh, "Votre adresse email a été modifiée.")
        result = await flow.start_contact_change(
            services,
            session,
            account,
            "email",
            form.get("value", ""),
            client=client,
            current_password=form.get("current_password", ""),
        )
        if "current_password" in result.errors:
            return render(
                request,
                "steps/account/email.html",
                {
                    "errors": {"current_password": result.errors["current_password"]},
                    "values": {"value": form.get("value", "")},
                    "account": account,
                },
                status=422,
                title=title,
            )
        if result.errors:
            return render(
                request,
                "steps/account/email.html",
                {
                    "errors": {"value": result.errors.get("email", next(iter(result.errors.values())))},
                    "values": {"value": form.get("value", "")},
                    "account": account,
                },
                status=422,
                title=title,
            )
        if result.step != "coordonnees-code":
            return await self._settings_page(request, account, result.notice)
        return render(
            request,
            "steps/account/email_code.html",
            {
                "errors": {},
                "pending": session.data.pending_contact if session.data else {},
                "length": services.host.code_policy("contact_change").length,
            },
            title=title,
        )

    # --- Mes données: the export, and the closure of the online account ------------------------------

    @get("/mon-compte/mes-donnees")
    async def my_data(self, request: Request[Any, Any, Any]) -> Any:
        from guichet.core.account_data import account_data, french_moment, shown_phone

        account = await require_account(request)
        data = await account_data(services_of(request), account)
        return render(
            request,
            "pages/mes_donnees.html",
            {"data": data, "moment": french_moment, "phone": shown_phone},
            title=_title(request, "Mes données"),
        )

    @get("/mon-compte/mes-donnees.json")
    async def my_data_file(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        account = await require_account(request)
        services = services_of(request)
        body = await flow.export_data(services, account, client=client_address(request))
        day = services.now().strftime("%Y-%m-%d")
        return Response(
            content=body,
            media_type="application/json",
            headers={
                "content-disposition": f'attachment; filename="mes-donnees-{day}.json"',
                "cache-control": "no-store",
            },
        )

    @get("/mon-compte/fermeture")
    async def closure(self, request: Request[Any, Any, Any]) -> Any:
        await require_account(request)
        return self._closure_page(request, {})

    def _closure_page(self, request: Request[Any, Any, Any], errors: dict[str, str]) -> Any:
        retention = services_of(request).config.legal.privacy.audit_retention
        return render(
            request,
            "steps/account/fermeture.html",
            {"errors": errors, "audit_retention": retention},
            status=422 if errors else 200,
            title=_title(request, "Fermer mon espace privé"),
        )

    @post("/mon-compte/fermeture")
    async def closure_submit(self, request: Request[Any, Any, Any]) -> Any:
        account = await require_account(request)
        form = await form_of(request)
        result = await flow.close_account(
            services_of(request),
            session_of(request),
            account,
            form.get("current_password", ""),
            client=client_address(request),
        )
        if result.errors:
            return self._closure_page(request, result.errors)
        response = go(request, "/espace-ferme")
        # every login of the account ended with it (this one too): so does what they reached at the services
        response.background = await end_other_logins(request, account["id"])
        return response
