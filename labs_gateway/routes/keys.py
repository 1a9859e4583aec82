"""Admin API for API keys (admin key required): list, create (the secret is in that answer only),
show, change limits / models / owner / expiry, rotate (a new secret) and revoke. `labs keys` and
the console's Keys page call these."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from labs_gateway.errors import NOT_FOUND, GatewayError, bad_request
from labs_gateway.http import JSONResponse, read_json
from labs_gateway.state import gateway_of
from labs_gateway.store.base import LIMIT_FIELDS

EDITABLE = ("owner", "models", "expires_at", *LIMIT_FIELDS)
MAX_INT = 2**53 - 1  # exact in every JSON reader, and in a 64-bit database column


def key_fields(body: Any, *, creating: bool) -> dict[str, Any]:
    """The checked fields of a create or update body."""
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object")
    allowed = ("name", *EDITABLE) if creating else EDITABLE
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise bad_request(f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}", unknown[0])
    out: dict[str, Any] = {}
    if creating:
        if not isinstance(body.get("name"), str) or not body["name"]:
            raise bad_request("name is required (a string)", "name")
        out["name"] = body["name"]
    if "owner" in body:
        if not isinstance(body["owner"], str) or len(body["owner"]) > 200:
            raise bad_request("owner must be a string (at most 200 characters)", "owner")
        out["owner"] = body["owner"]
    if "models" in body:
        models = body["models"]
        if not isinstance(models, list) or not all(isinstance(m, str) and m and "," not in m for m in models):
            raise bad_request("models must be a list of model names (empty: every model)", "models")
        out["models"] = tuple(models)
    for name in ("expires_at", *LIMIT_FIELDS):
        if name in body:
            value = body[name]
            if isinstance(value, float) and value.is_integer():  # JSON's 5.0 is the integer 5
                value = int(value)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or not 0 <= value <= MAX_INT):
                raise bad_request(f"{name} must be an integer from 0 to {MAX_INT}, or null", name)
            out[name] = value
    return out


async def collection(request: Request) -> Response:
    """/admin/keys: one route for both methods, so a 405 lists them all in Allow."""
    return await (create_key(request) if request.method == "POST" else list_keys(request))


async def item(request: Request) -> Response:
    """/admin/keys/{name}: GET shows, PATCH changes, DELETE revokes."""
    handler = {"PATCH": update_key, "DELETE": revoke_key}.get(request.method, get_key)
    return await handler(request)


async def list_keys(request: Request) -> Response:
    gw = gateway_of(request)
    await gw.keys.authorize_admin(request.headers.get("authorization"))
    return JSONResponse({"object": "list", "data": [k.public() for k in await gw.store.list_keys()]})


async def create_key(request: Request) -> Response:
    gw = gateway_of(request)
    await gw.keys.authorize_admin(request.headers.get("authorization"))
    fields = key_fields(await read_json(request, 64 * 1024), creating=True)
    key, secret = await gw.keys.create(fields)
    return JSONResponse({**key.public(), "secret": secret}, status_code=201)


async def get_key(request: Request) -> Response:
    gw = gateway_of(request)
    await gw.keys.authorize_admin(request.headers.get("authorization"))
    key = await gw.store.get_key(request.path_params["name"])
    if key is None:
        raise GatewayError(404, f"no API key named {request.path_params['name']!r}", type=NOT_FOUND,
                           code="key_not_found")
    return JSONResponse(key.public())


async def update_key(request: Request) -> Response:
    gw = gateway_of(request)
    await gw.keys.authorize_admin(request.headers.get("authorization"))
    fields = key_fields(await read_json(request, 64 * 1024), creating=False)
    return JSONResponse((await gw.keys.update(request.path_params["name"], fields)).public())


async def rotate_key(request: Request) -> Response:
    gw = gateway_of(request)
    await gw.keys.authorize_admin(request.headers.get("authorization"))
    key, secret = await gw.keys.rotate(request.path_params["name"])
    return JSONResponse({**key.public(), "secret": secret})


async def revoke_key(request: Request) -> Response:
    gw = gateway_of(request)
    await gw.keys.authorize_admin(request.headers.get("authorization"))
    return JSONResponse((await gw.keys.revoke(request.path_params["name"])).public())

