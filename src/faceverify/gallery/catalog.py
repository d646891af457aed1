"""Named galleries: several galleries side by side, each its own store.

A catalogue maps a gallery *name* to a store. Under a folder, each gallery is an
embedded gallery in ``<folder>/<name>/`` (the same folder format ``faceverify enroll
--db`` writes, so an existing gallery can be moved in); under a ``postgresql://`` URL,
each gallery is a schema ``fvg_<name>`` of that database. Names are checked against
:data:`GALLERY_NAME` before they reach a path or an SQL identifier, so a name coming
from a request can never leave the catalogue.
"""

from __future__ import annotations

import re
import shutil
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from faceverify.errors import GalleryError, GalleryExistsError, UnknownGalleryError
from faceverify.gallery.base import GalleryStore

#: Lower-case letters, digits, ``_`` and ``-``; starts with a letter or digit; 1-48 long.
GALLERY_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,47}")
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
    def create(self, name: str) -> None:
        """Make an empty gallery; :class:`GalleryExistsError` if it is there already."""

    @abstractmethod
    def delete(self, name: str) -> None:
        """Delete a gallery with everyone in it; :class:`UnknownGalleryError` if absent."""

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
    """Embedded galleries, one sub-folder each, under ``root``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()
        self.location = str(self.root)
        if self.root.exists() and not self.root.is_dir():
            raise GalleryError(f"'{self.root}' is a file; galleries live in a folder")
        self.root.mkdir(parents=True, exist_ok=True)

    def _folder(self, name: str) -> Path:
        folder = self.root / check_gallery_name(name)
        if folder.parent != self.root:  # the name rule already excludes this; belt and braces
            raise GalleryError(f"gallery name {name!r} is not valid")
        return folder

    def names(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and GALLERY_NAME.fullmatch(p.name))

    def exists(self, name: str) -> bool:
        return self._folder(name).is_dir()

    def create(self, name: str) -> None:
        folder = self._folder(name)
        try:
            folder.mkdir()
        except FileExistsError:
            raise GalleryExistsError(f"a gallery named {name!r} already exists") from None
        self._open(name).close()  # lay down the database now, so a bad disk fails here

    def delete(self, name: str) -> None:
        folder = self._folder(name)
        if not folder.is_dir():
            raise UnknownGalleryError(f"no gallery named {name!r}")
        # rename first: a reader never sees a half-deleted gallery under the old name
        doomed = folder.with_name(f".deleting-{name}")
        folder.rename(doomed)
        shutil.rmtree(doomed)

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
    """PostgreSQL galleries, one schema each, in the database of ``url``."""

    def __init__(self, url: str) -> None:
        import psycopg

        from faceverify.gallery.postgres import PostgresStore

        self.url = url
        # a store on the public schema checks the connection and installs pgvector, once
        with PostgresStore(url) as check:
            self.location = check.location
        self._lock = threading.Lock()  # one connection, used from the service's threads
        self._db: Any = psycopg.connect(url, autocommit=True, connect_timeout=10)

    def _schema(self, name: str) -> str:
        return _PG_SCHEMA_PREFIX + check_gallery_name(name)

    def _execute(self, query: Any, args: tuple[Any, ...] = ()) -> list[Any]:
        import psycopg

        try:
            with self._lock:
                cursor = self._db.execute(query, args)
                return list(cursor.fetchall()) if cursor.description else []
        except psycopg.errors.DuplicateSchema:
            raise
        except psycopg.Error as exc:
            raise GalleryError(f"PostgreSQL at {self.location} failed: {str(exc).strip()}") from exc

    def names(self) -> list[str]:
        rows = self._execute(
            "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s) ORDER BY nspname",
            (_PG_SCHEMA_PREFIX,),
        )
        names = (r[0][len(_PG_SCHEMA_PREFIX) :] for r in rows)
        return [n for n in names if GALLERY_NAME.fullmatch(n)]

    def exists(self, name: str) -> bool:
        rows = self._execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (self._schema(name),))
        return bool(rows)

    def create(self, name: str) -> None:
        import psycopg
        from psycopg import sql

        try:
            self._execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(self._schema(name))))
        except psycopg.errors.DuplicateSchema:
            raise GalleryExistsError(f"a gallery named {name!r} already exists") from None

    def delete(self, name: str) -> None:
        from psycopg import sql

        if not self.exists(name):
            raise UnknownGalleryError(f"no gallery named {name!r}")
        self._execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(self._schema(name))))

    def _open(self, name: str) -> GalleryStore:
        from faceverify.gallery.postgres import PostgresStore

        return PostgresStore(_with_search_path(self.url, self._schema(name)))

    def ping(self) -> None:
        self._execute("SELECT 1")

    def close(self) -> None:
        self._db.close()


def _with_search_path(url: str, schema: str) -> str:
    """``url`` whose sessions put ``schema`` first on the search path (pgvector stays reachable)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "options"]
    query.append(("options", f'-c search_path="{schema}",public'))
    # libpq decodes %20, not "+", as a space
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


def open_catalog(location: str | Path) -> GalleryCatalog:
    """The catalogue at a folder path or a ``postgresql://`` URL."""
    text = str(location)
    if text.startswith(("postgresql://", "postgres://")):
        return PostgresCatalog(text)
    return FolderCatalog(text)
