"""API keys page: ``/b/{brand}/api-keys`` — list, create (secret shown once), revoke."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

from siyu.core.errors import SiyuError
from siyu.core.validation import parse
from siyu.org import actions, queries
from siyu.org.models import Brand
from siyu.org.permissions import API_SCOPES
from siyu.org.schemas import ApiKeyIn
from siyu.web.deps import Con, Console, Form, text_field
from siyu.web.render import FormState, page

router = APIRouter(include_in_schema=False)


def keys_page(
    con: Console,
    b: Brand,
    status: int = 200,
    form: FormState | None = None,
    secret: str = "",
    secret_name: str = "",
) -> Response:
    keys = queries.list_api_keys(con.db, con.actor, b)
    return page(
        con,
        "api_keys.html",
        b,
        "api_keys",
        status,
        keys=keys,
        scopes=API_SCOPES,
        form=form or FormState(values={"scopes": ["org.read"]}),
        secret=secret,
        secret_name=secret_name,
    )


@router.get("/b/{brand}/api-keys")
def list_keys(brand: str, con: Con) -> Response:
    b = con.brand(brand, "apikeys.manage")
    return keys_page(con, b)


@router.post("/b/{brand}/api-keys")
def create_key(brand: str, con: Con, form: Form) -> Response:
    b = con.brand(brand, "apikeys.manage")
    name = text_field(form, "name")
    scopes = [s for s in form.getlist("scopes") if isinstance(s, str)]
    try:
        data = parse(ApiKeyIn, {"name": name, "scopes": scopes})
        key, secret = actions.create_api_key(con.db, con.actor, b, data)
    except SiyuError as exc:
        state = FormState.failed(exc, {"name": name, "scopes": scopes}, con.locale)
        return keys_page(con, b, exc.status, form=state)
    # Rendered directly (no redirect): the secret exists only in this response.
    return keys_page(con, b, 201, secret=secret, secret_name=key.name)


@router.post("/b/{brand}/api-keys/{key}/revoke")
def revoke_key(brand: str, key: str, con: Con) -> Response:
    b = con.brand(brand, "apikeys.manage")
    actions.revoke_api_key(con.db, con.actor, b, key)
    return RedirectResponse(f"/b/{b.slug}/api-keys", status_code=303)
