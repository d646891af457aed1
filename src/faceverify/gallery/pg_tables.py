"""The PostgreSQL gallery's bookkeeping tables: its uuid, audit log and request keys.

Every function takes a connection (or cursor) already inside the caller's transaction,
so a write, its audit entry and its request key commit or roll back together. Tables are
unqualified: the session's ``search_path`` puts the gallery's own schema first (see
:func:`faceverify.gallery.catalog._with_search_path`).

The audit log holds who did what to which person id and how many faces: never a name, a
vector or a photo's hash, so an ``erase`` entry outlives nothing that identifies the person.
"""

from __future__ import annotations

import uuid as uuids
from typing import Any

from faceverify.checks import check_choice
from faceverify.errors import GalleryError
from faceverify.gallery.base import (
    AUDIT_ACTIONS,
    LIBRARY_ACTOR,
    AddResult,
    AuditEntry,
    Change,
    replayed_or_conflict,
)

#: Tables every gallery schema has from its first open, bound to a model or not.
BASE_TABLES = (
    "CREATE TABLE IF NOT EXISTS faceverify_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS faceverify_audit (seq BIGSERIAL PRIMARY KEY, "
    "time TIMESTAMPTZ NOT NULL DEFAULT now(), actor TEXT NOT NULL, action TEXT NOT NULL, "
    "person_id BIGINT, faces INT NOT NULL DEFAULT 0)",
    # a person's stored answers name their files: they go when the person is erased
    "CREATE TABLE IF NOT EXISTS faceverify_requests (key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, "
    "answer TEXT NOT NULL, person_id BIGINT, created TIMESTAMPTZ DEFAULT now())",
)
#: Every table a gallery schema may hold, for a reset (faces first: they reference people).
ALL_TABLES = (
    "faceverify_library_apart, faceverify_library_rejections, faceverify_library_faces, "
    "faceverify_library_groups, faceverify_library_photos, faceverify_library_meta, "
    "faceverify_faces, faceverify_people, faceverify_meta, faceverify_audit, faceverify_requests"
)
#: Deleted galleries' audit logs, beside the galleries (see ``PostgresCatalog.delete``).
ARCHIVE_TABLE = (
    "CREATE TABLE IF NOT EXISTS public.faceverify_audit_archive (gallery TEXT NOT NULL, uuid TEXT, "
    "deleted TIMESTAMPTZ NOT NULL DEFAULT now(), entry JSONB NOT NULL)"
)


def create_base_tables(db: Any) -> str:
    """Create the bookkeeping tables when missing; returns the gallery's uuid (given now
    if it had none, kept otherwise: the first writer's uuid wins a race)."""
    for statement in BASE_TABLES:
        db.execute(statement)
    db.execute(
        "INSERT INTO faceverify_meta VALUES ('uuid', %s) ON CONFLICT (key) DO NOTHING", (str(uuids.uuid4()),)
    )
    row = db.execute("SELECT value FROM faceverify_meta WHERE key = 'uuid'").fetchone()
    return str(row[0])


def actor_of(change: Change | None) -> str:
    return LIBRARY_ACTOR if change is None else change.actor


def write_audit(
    db: Any, change: Change | None, action: str, person_id: int | None = None, faces: int = 0
) -> None:
    """One audit entry, in the caller's transaction."""
    check_choice("audit action", action, AUDIT_ACTIONS, error=GalleryError)
    db.execute(
        "INSERT INTO faceverify_audit (actor, action, person_id, faces) VALUES (%s, %s, %s, %s)",
        (actor_of(change), action, person_id, faces),
    )


def read_audit(db: Any, after: int, limit: int) -> list[AuditEntry]:
    rows = db.execute(
        "SELECT seq, time, actor, action, person_id, faces FROM faceverify_audit WHERE seq > %s "
        "ORDER BY seq LIMIT %s",
        (after, limit),
    ).fetchall()
    return [
        AuditEntry(int(r[0]), r[1].isoformat(), r[2], r[3], None if r[4] is None else int(r[4]), int(r[5]))
        for r in rows
    ]


def replay(db: Any, change: Change | None) -> AddResult | None:
    """The stored answer to ``change``'s request key, or None for a new key (or none).

    Takes a transaction-scoped advisory lock on the key first: a concurrent retry with
    the same key waits here until this transaction ends, then finds its answer, so two
    retries never both write. The lock's first half is the schema, so galleries do not
    wait on each other's keys.
    """
    if change is None or change.request_key is None:
        return None
    key = change.request_key
    db.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema()), hashtext(%s))", (key,))
    row = db.execute("SELECT fingerprint, answer FROM faceverify_requests WHERE key = %s", (key,)).fetchone()
    return replayed_or_conflict(change, None if row is None else (str(row[0]), str(row[1])))


def remember(db: Any, change: Change | None, result: AddResult) -> None:
    """Keep the answer under the request key, in the write's own transaction."""
    if change is None or change.request_key is None:
        return
    db.execute(
        "INSERT INTO faceverify_requests (key, fingerprint, answer, person_id) VALUES (%s, %s, %s, %s)",
        (change.request_key, change.fingerprint, result.to_json(), result.person_id),
    )


def archive_audit(db: Any, gallery: str, uuid: str) -> None:
    """Copy the gallery's audit log (the schema first on the search path) into the archive."""
    db.execute(
        "INSERT INTO public.faceverify_audit_archive (gallery, uuid, entry) "
        "SELECT %s, %s, jsonb_build_object('seq', seq, 'time', time, 'actor', actor, 'action', action, "
        "'person_id', person_id, 'faces', faces) FROM faceverify_audit ORDER BY seq",
        (gallery, uuid),
    )


def sweep_archive(db: Any, days: float) -> int:
    """Forget archived audit logs of galleries deleted more than ``days`` ago."""
    return int(
        db.execute(
            "DELETE FROM public.faceverify_audit_archive WHERE deleted < now() - make_interval(secs => %s)",
            (days * 86400.0,),
        ).rowcount
    )


def read_archive(db: Any, gallery: str | None) -> list[dict[str, Any]]:
    """Archived entries (of one gallery name, if given), oldest deletion first, in log order."""
    rows = db.execute(
        "SELECT gallery, uuid, entry FROM public.faceverify_audit_archive "
        "WHERE %s::text IS NULL OR gallery = %s ORDER BY deleted, uuid, (entry->>'seq')::bigint",
        (gallery, gallery),
    ).fetchall()
    return [{**row[2], "gallery": row[0], "uuid": row[1]} for row in rows]
