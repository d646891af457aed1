"""``/v1/keys``: list, create and revoke API keys (an ``admin`` key valid for every gallery).

The same keys file as ``faceverify keys``; a key is shown once, in the answer that made it.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends, Response

from faceverify.errors import ForbiddenError, NoKeysError, UnknownKeyError
from faceverify.service.deps import Admin, Gate, State, actor, admin_access
from faceverify.service.keys import ApiKey, KeyStore
from faceverify.service.schemas import ERRORS, KeyIn, KeyOut, NewKeyOut

router = APIRouter(prefix="/v1/keys", tags=["keys"], responses=ERRORS, dependencies=[Depends(admin_access)])


def _store(state: State, key: ApiKey | None) -> KeyStore:
    if key is None:
        raise NoKeysError("this service runs without API keys (--insecure); there are none to manage")
    if key.gallery is not None:  # it could otherwise make itself a key for every gallery
        raise ForbiddenError("managing keys needs an admin key valid for every gallery")
    return state.keys


@router.get("", response_model=list[KeyOut], summary="Every API key (never the keys themselves)")
def list_keys(state: State, key: Admin) -> list[dict[str, Any]]:
    return [asdict(record) for record in _store(state, key).records()]


@router.post("", response_model=NewKeyOut, status_code=201, summary="Make a key (shown only in this answer)")
def create_key(state: State, key: Admin, gate: Gate, body: KeyIn) -> dict[str, Any]:
    store = _store(state, key)
    with gate.writing():
        secret, record = store.create(
            body.scope, gallery=body.gallery, label=body.label, expires=body.expires, actor=actor(key)
        )
    return {"key": secret, **asdict(record)}


@router.delete("/{key_id}", status_code=204, summary="Revoke a key: it fails from the next request on")
def revoke_key(state: State, key: Admin, gate: Gate, key_id: str) -> Response:
    store = _store(state, key)
    if key_id not in {record.id for record in store.records()}:
        raise UnknownKeyError(f"no API key with id {key_id!r}; GET /v1/keys lists them")
    with gate.writing():
        store.revoke(key_id, actor=actor(key))
    return Response(status_code=204)
