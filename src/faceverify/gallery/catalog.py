"""Named galleries: several galleries side by side, each its own store.

A catalogue maps a gallery *name* to a store. Under a folder, each gallery is an
embedded gallery in ``<folder>/<name>/`` (the same folder format ``faceverify enroll
--db`` writes, so an existing gallery can be moved in); under a ``postgresql://`` URL,
each gallery is a schema ``fvg_<name>`` of that database. Names are checked against
:data:`GALLERY_NAME` before they reach a path or an SQL identifier, so a name coming
from a request can never leave the catalogue.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import shutil
import sqlite3
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from faceverify.errors import GalleryError, GalleryExistsError, UnknownGalleryError
from faceverify.gallery.base import LIBRARY_ACTOR, Change, GalleryStore
from faceverify.paths import private_dir, timestamp, write_private

#: Lower-case letters, digits, ``_`` and ``-``; starts with a letter or digit; 1-48 long.
GALLERY_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,47}")
#: Days a deleted gallery's audit log is kept beside the catalogue.
AUDIT_DAYS = 365.0
_PG_SCHEMA_PREFIX = "fvg_"


def check_gallery_name(name: str) -> str:
    """The name, if it is a valid gallery name; else a :class:`GalleryError` saying the rule."""
    if not isinstance(name, str) or GALLERY_NAME.fullmatch(name) is None:
        shown = name if isinstance(name, str) and len(name) <= 60 else f"{str(name)[:60]}..."
        raise GalleryError(
            f"gallery name {shown!r} is not valid; use 1-48 lower-case letters, digits, '_' or '-', "
            "starting with a letter or digit"
        )
    return name


class GalleryCatalog(ABC):
    """The galleries under one location; each method checks the name it is given."""

    location: str

    @abstractmethod
    def names(self) -> list[str]:
        """Every gallery, sorted by name."""

    @abstractmethod
    def exists(self, name: str) -> bool: ...

    @abstractmethod
    def create(self, name: str, *, change: Change | None = None) -> None:
        """Make an empty gallery (its audit log starts with ``create``);
        :class:`GalleryExistsError` if it is there already."""

    @abstractmethod
    def delete(self, name: str, *, change: Change | None = None) -> None:
        """Delete a gallery with everyone in it; :class:`UnknownGalleryError` if absent.

        Its audit log, closed by a ``delete`` entry, is kept beside the catalogue (see
        :meth:`deleted_audit`) for ``audit_days``; everything else goes. A crash half-way
        is finished at the next open of the catalogue.
        """

    @abstractmethod
    def uuid(self, name: str) -> str | None:
        """The gallery's uuid (see :attr:`GalleryStore.uuid`), None when there is none."""

    @abstractmethod
    def deleted_audit(self, name: str | None = None) -> list[dict[str, Any]]:
        """Audit entries of deleted galleries still kept (of ``name`` only, if given),
        each with ``gallery`` and ``uuid`` added; oldest first."""

    @abstractmethod
    def _open(self, name: str) -> GalleryStore: ...

    @abstractmethod
    def ping(self) -> None:
        """Raise :class:`GalleryError` unless the location can be read and written."""

    def open(self, name: str) -> GalleryStore:
        """The store of an existing gallery (the caller closes it)."""
        if not self.exists(check_gallery_name(name)):
            raise UnknownGalleryError(f"no gallery named {name!r}")
        return self._open(name)

    @abstractmethod
    def close(self) -> None:
        """Release what the catalogue holds (the stores it opened are the caller's)."""


class FolderCatalog(GalleryCatalog):
    """Embedded galleries, one sub-folder each, under ``root`` (folders 0700, files 0600).

    Deleted galleries' audit logs are kept as ``.audit/<name>.<uuid>.jsonl`` for
    ``audit_days`` days; a gallery whose deletion a crash cut short (``.deleting-*``) is
    finished when the catalogue is next opened.
    """

    def __init__(self, root: str | Path, *, audit_days: float = AUDIT_DAYS) -> None:
        self.root = Path(root).expanduser()
        self.location = str(self.root)
        self.audit_days = audit_days
        if self.root.exists() and not self.root.is_dir():
            raise GalleryError(f"'{self.root}' is a file; galleries live in a folder")
        private_dir(self.root)
        self._sweep()

    def _sweep(self) -> None:
        for doomed in self.root.glob(".deleting-*"):
            shutil.rmtree(doomed, ignore_errors=True)
        expiry = time.time() - self.audit_days * 86_400
        for log in self._archives():
            if log.stat().st_mtime < expiry:
                log.unlink(missing_ok=True)

    def _archives(self) -> list[Path]:
        return sorted((self.root / ".audit").glob("*.jsonl"), key=lambda p: (p.stat().st_mtime, p.name))

    def _folder(self, name: str) -> Path:
        folder = self.root / check_gallery_name(name)
        if folder.parent != self.root:  # the name rule already excludes this; belt and braces
            raise GalleryError(f"gallery name {name!r} is not valid")
        return folder

    def names(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and GALLERY_NAME.fullmatch(p.name))

    def exists(self, name: str) -> bool:
        return self._folder(name).is_dir()

    def create(self, name: str, *, change: Change | None = None) -> None:
        folder = self._folder(name)
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            raise GalleryExistsError(f"a gallery named {name!r} already exists") from None
        with self._open(name) as store:  # lays down the database now, so a bad disk fails here
            store.record("create", change)

    def delete(self, name: str, *, change: Change | None = None) -> None:
        folder = self._folder(name)
        if not folder.is_dir():
            raise UnknownGalleryError(f"no gallery named {name!r}")
        with self._open(name) as store:
            gallery_uuid, entries = store.uuid, _all_entries(store)
        closing = {
            "seq": entries[-1]["seq"] + 1 if entries else 1,
            "time": timestamp(),
            "actor": change.actor if change is not None else LIBRARY_ACTOR,
            "action": "delete",
            "person_id": None,
            "faces": 0,
        }
        lines = "".join(json.dumps(entry) + "\n" for entry in [*entries, closing])
        write_private(private_dir(self.root / ".audit") / f"{name}.{gallery_uuid}.jsonl", lines)
        # rename first: a reader never sees a half-deleted gallery under the old name, and a
        # crash leaves a .deleting-* folder that the next open sweeps away
        doomed = folder.with_name(f".deleting-{name}-{secrets.token_hex(4)}")
        folder.rename(doomed)
        shutil.rmtree(doomed)

    def uuid(self, name: str) -> str | None:
        database = self._folder(name) / "gallery.db"
        if not database.is_file():
            return None
        try:  # read-only and without a store: it runs for every request of the service
            with contextlib.closing(sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True)) as db:
                row = db.execute("SELECT value FROM meta WHERE key = 'uuid'").fetchone()
        except sqlite3.Error as exc:  # busy, or a file half-written: say so, never "absent"
            raise GalleryError(f"gallery {name!r} cannot be read just now ({exc})") from exc
        return None if row is None else str(row[0])

    def deleted_audit(self, name: str | None = None) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        for log in self._archives():
            gallery, gallery_uuid = log.stem.split(".", 1)
            if name is None or gallery == name:
                lines = log.read_text(encoding="utf-8").splitlines()
                entries += [{**json.loads(line), "gallery": gallery, "uuid": gallery_uuid} for line in lines]
        return entries

    def _open(self, name: str) -> GalleryStore:
        from faceverify.gallery.sqlite import SQLiteStore

        return SQLiteStore(self._folder(name))

    def close(self) -> None:
        """Nothing to release: each store holds its own connection."""

    def ping(self) -> None:
        probe = self.root / ".ping"
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise GalleryError(f"galleries folder '{self.root}' is not writable: {exc.strerror}") from exc


class PostgresCatalog(GalleryCatalog):
    """PostgreSQL galleries, one schema each, in the database of ``url``.

    The catalogue's own statements go through a small pool (at most 2 connections), not
    one shared connection behind a lock: a connection the server dropped (a restart, a
    failover) is replaced at the next call instead of failing every call until the
    service restarts, and its sessions have the stores' statement and lock timeouts, so
    a delete waiting behind a long search fails with a clear error instead of hanging.

    Args:
        audit_days: days a deleted gallery's audit log is kept in
            ``public.faceverify_audit_archive``; older ones are swept at construction.
    """

    def __init__(self, url: str, *, audit_days: float = AUDIT_DAYS) -> None:
        from faceverify.gallery.pg_session import PgConnector
        from faceverify.gallery.pg_tables import ARCHIVE_TABLE, sweep_archive

        number = isinstance(audit_days, (int, float)) and not isinstance(audit_days, bool)
        if not number or not 0 <= audit_days < 1e6:
            raise GalleryError(f"audit_days must be a number of days from 0 to 1e6, not {audit_days!r}")
        self.url, self.audit_days = url, float(audit_days)
        self._link = PgConnector(url)
        self.location = self._link.location
        with self._link.connect() as db, self._link.errors(), db.transaction():
            db.execute("SELECT pg_advisory_xact_lock(hashtext('faceverify setup'))")
            db.execute("CREATE EXTENSION IF NOT EXISTS vector")  # once, in the database's public schema
            db.execute(ARCHIVE_TABLE)
            sweep_archive(db, self.audit_days)
        self._pool = self._link.pool(1, 2)

    def _schema(self, name: str) -> str:
        return _PG_SCHEMA_PREFIX + check_gallery_name(name)

    def names(self) -> list[str]:
        with self._pool.session() as db:
            rows = db.execute(
                "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s) ORDER BY nspname",
                (_PG_SCHEMA_PREFIX,),
            ).fetchall()
        names = (r[0][len(_PG_SCHEMA_PREFIX) :] for r in rows)
        return [n for n in names if GALLERY_NAME.fullmatch(n)]

    def exists(self, name: str) -> bool:
        schema = self._schema(name)
        with self._pool.session() as db:
            row = db.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
        return row is not None

    def create(self, name: str, *, change: Change | None = None) -> None:
        import psycopg
        from psycopg import sql

        schema = sql.Identifier(self._schema(name))
        with self._pool.session() as db:
            try:
                db.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
            except psycopg.errors.DuplicateSchema:
                raise GalleryExistsError(f"a gallery named {name!r} already exists") from None
        try:
            with self._open(name) as store:  # lays down the tables now, so a bad server fails here
                store.record("create", change)
        except BaseException:
            with self._pool.session() as db:  # the schema is ours: no half-made gallery stays
                db.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(schema))
            raise

    def delete(self, name: str, *, change: Change | None = None) -> None:
        """Archive the audit log with a closing ``delete`` entry and drop the schema, in one
        transaction: a crash leaves the whole gallery, or its archived log and no gallery."""
        from psycopg import sql

        from faceverify.gallery.pg_tables import archive_audit, create_base_tables, write_audit

        schema = self._schema(name)
        with self._pool.transaction() as db:
            if db.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is None:
                raise UnknownGalleryError(f"no gallery named {name!r}")
            db.execute(sql.SQL("SET LOCAL search_path = {}, public").format(sql.Identifier(schema)))
            gallery_uuid = create_base_tables(db)  # a gallery never opened since it was made has none
            write_audit(db, change, "delete")
            archive_audit(db, name, gallery_uuid)
            db.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))

    def uuid(self, name: str) -> str | None:
        import psycopg
        from psycopg import sql

        query = sql.SQL("SELECT value FROM {}.faceverify_meta WHERE key = 'uuid'").format(
            sql.Identifier(self._schema(name))
        )
        with self._pool.session() as db:
            try:
                row = db.execute(query).fetchone()
            except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
                return None  # no such gallery, or one never opened since it was made
        return None if row is None else str(row[0])

    def deleted_audit(self, name: str | None = None) -> list[dict[str, Any]]:
        from faceverify.gallery.pg_tables import read_archive

        with self._pool.session() as db:
            return read_archive(db, None if name is None else check_gallery_name(name))

    def _open(self, name: str) -> GalleryStore:
        from faceverify.gallery.postgres import PostgresStore

        return PostgresStore(_with_search_path(self.url, self._schema(name)))

    def ping(self) -> None:
        with self._pool.session() as db:
            db.execute("SELECT 1")

    def close(self) -> None:
        self._pool.close()


def _with_search_path(url: str, schema: str) -> str:
    """``url`` whose sessions put ``schema`` first on the search path (pgvector stays reachable)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "options"]
    query.append(("options", f'-c search_path="{schema}",public'))
    # libpq decodes %20, not "+", as a space
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


def _all_entries(store: GalleryStore) -> list[dict[str, Any]]:
    """Every audit entry of a store, as dicts, oldest first."""
    entries: list[dict[str, Any]] = []
    while batch := store.audit(after=entries[-1]["seq"] if entries else 0):
        entries += [entry.to_dict() for entry in batch]
    return entries


def open_catalog(location: str | Path) -> GalleryCatalog:
    """The catalogue at a folder path or a ``postgresql://`` URL."""
    text = str(location)
    if text.startswith(("postgresql://", "postgres://")):
        return PostgresCatalog(text)
    return FolderCatalog(text)
