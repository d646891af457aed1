"""Checks of what the user points the doctor at: the gallery behind ``--db`` and the
service's API keys file."""

from __future__ import annotations

import os
import re
import shlex
import stat
import urllib.parse
from pathlib import Path
from typing import Any

from faceverify.doctor.base import (
    CONNECT_TIMEOUT_S,
    POSTGRES_FIX,
    POSTGRES_PREFIXES,
    Check,
    Status,
    first_line,
    installed,
)

# ----------------------------------------------------------------------------------------
# the gallery behind --db


def mask_url(url: str) -> str:
    """``url`` with its password (in the user part or a ``password=`` parameter) as ``***``."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, sep, _ = userinfo.partition(":")
        netloc = f"{user}:***@{hostport}" if sep else netloc
    query = re.sub(r"(?i)(^|&)(password=)[^&]*", r"\1\2***", parts.query)
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _secrets_of(url: str) -> list[str]:
    """The password as written in ``url`` and decoded, to scrub from any error text (read
    by pattern too: an unparsable URL, which the driver may quote back, has one as well)."""
    found = re.findall(r"//[^:/@]*:([^@]*)@", url) + re.findall(r"(?i)[?&]password=([^&]*)", url)
    try:
        parts = urllib.parse.urlsplit(url)
        found += [parts.password or ""]
    except ValueError:
        pass
    found += [urllib.parse.unquote(s) for s in found]
    return sorted({s for s in found if s}, key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """``text`` (an error message) with ``url`` masked and its password nowhere in it."""
    text = text.replace(url, mask_url(url))
    for secret in _secrets_of(url):
        text = text.replace(secret, "***")
    return text


def check_gallery(db: str | None) -> Check:
    """The gallery ``--db`` names (its failure fails the command), else the default one."""
    from faceverify.gallery.gallery import default_location

    asked = db is not None
    location = db if db is not None else str(default_location())
    if location.startswith(POSTGRES_PREFIXES):
        return check_postgres(location, required=asked)
    return check_sqlite(Path(location).expanduser(), required=asked)


def check_sqlite(folder: Path, *, required: bool) -> Check:
    """An embedded gallery: a folder holding ``gallery.db``, read with SELECTs only (the doctor
    changes nothing), or a folder of such galleries (the service's ``--db``)."""
    from faceverify.gallery.sqlite import DB_NAME

    name = "gallery"
    quoted = shlex.quote(str(folder))
    if not folder.exists():
        if required:
            return Check(
                name,
                "broken",
                f"no gallery at {folder}",
                f"check the path, or create one: faceverify enroll --db {quoted} NAME PHOTO...",
                True,
            )
        return Check(name, "ok", f"{folder}: no gallery yet (faceverify enroll creates it)")
    if not folder.is_dir():
        parent = shlex.quote(str(folder.parent))
        fix = f"--db {parent}" if folder.name == DB_NAME else "give a folder to --db"
        return Check(
            name, "broken", f"{folder} is a file; a gallery is a folder holding {DB_NAME}", fix, required
        )
    database = folder / DB_NAME
    if not database.exists():
        galleries = sorted(p.name for p in folder.iterdir() if (p / DB_NAME).is_file())
        if galleries:
            return Check(
                name,
                "ok",
                f"{folder}: a folder of {len(galleries)} galleries: {', '.join(galleries)}",
                required=required,
            )
        return Check(name, "ok", f"{folder}: empty; a new gallery would be created there", required=required)
    return _read_sqlite(database, required=required)


def _read_sqlite(database: Path, *, required: bool) -> Check:
    """Counts read with plain SELECTs. The file is opened for writing when allowed (never
    created: ``mode=rw``) only because a WAL database's last connection then removes the
    ``-wal``/``-shm`` files it needed, leaving the folder as it was found."""
    import sqlite3

    mode = "rw" if os.access(database, os.W_OK) else "ro"
    try:
        db = sqlite3.connect(
            f"{database.resolve().as_uri()}?mode={mode}", uri=True, timeout=CONNECT_TIMEOUT_S
        )
        try:
            people = db.execute("SELECT count(*) FROM people").fetchone()[0]
            faces = db.execute("SELECT count(*) FROM faces").fetchone()[0]
            row = db.execute("SELECT value FROM meta WHERE key = 'manifest'").fetchone()
        finally:
            db.close()
    except sqlite3.Error as exc:
        return Check(
            "gallery",
            "broken",
            f"{database} cannot be read: {exc}",
            "restore it from an export (faceverify import), or move the folder away",
            required,
        )
    model = _manifest_model(row[0] if row else None)
    return Check(
        "gallery",
        "ok",
        f"{database.parent}: SQLite, {people} people, {faces} faces, model {model}",
        required=required,
    )


def _manifest_model(text: str | None) -> str:
    import json

    if text is None:
        return "none yet"
    try:
        return str(json.loads(text).get("model", "?"))
    except (ValueError, AttributeError):
        return "unreadable"


def check_postgres(url: str, *, required: bool) -> Check:
    """A PostgreSQL gallery: reachable within :data:`CONNECT_TIMEOUT_S`, with pgvector
    installed or installable; the password never appears in the report."""
    shown = mask_url(url)
    if not installed("psycopg"):
        return Check(
            "gallery", "broken", f"{shown}: the postgres extra is not installed", POSTGRES_FIX, required
        )
    import psycopg

    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as db:
            detail, fix = _postgres_detail(db)
    except psycopg.Error as exc:
        reason = scrub(first_line(exc), url)
        fix = (
            "check host, port, user, password and database in the URL, and that the server runs (pg_isready)"
        )
        return Check("gallery", "broken", f"cannot connect to PostgreSQL at {shown}: {reason}", fix, required)
    status: Status = "broken" if fix else "ok"
    return Check("gallery", status, f"{shown}: {detail}", fix, required)


def _postgres_detail(db: Any) -> tuple[str, str]:
    """What the server is and holds, and the fix when pgvector cannot be had."""
    db.execute(f"SET statement_timeout = {CONNECT_TIMEOUT_S * 1000}")
    server = db.execute("SHOW server_version").fetchone()[0]
    row = db.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    offered = db.execute(
        "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'"
    ).fetchone()
    if row is not None:
        vector = f"pgvector {row[0]}"
    elif offered is not None:
        vector = f"pgvector {offered[0]} available, created on first use (needs the CREATE privilege)"
    else:
        fix = "install pgvector on the server (apt install postgresql-NN-pgvector); CREATE EXTENSION vector"
        return f"PostgreSQL {server}; pgvector is not installed on the server", fix
    people = db.execute("SELECT to_regclass('faceverify_people') IS NOT NULL").fetchone()[0]
    held = db.execute("SELECT count(*) FROM faceverify_people").fetchone()[0] if people else None
    schemas = db.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'fvg\\_%'").fetchone()[0]
    contents = f"{held} people" if held is not None else "no gallery tables yet"
    if schemas:
        contents += f", {schemas} service galleries"
    return f"PostgreSQL {server}; {vector}; {contents}", ""


# ----------------------------------------------------------------------------------------
# the service's API keys


def check_keys(path: str | None) -> Check:
    """The keys file ``--keys`` names (its failure fails the command), else the default:
    present, owner-only (0600 in a 0700 folder), readable, and how many keys it holds.
    Never the keys or their hashes."""
    from faceverify.service.settings import default_keys_file

    asked = path is not None
    file = Path(path if path is not None else default_keys_file()).expanduser()
    quoted = shlex.quote(str(file))
    if not file.exists():
        create = (
            f"faceverify keys create --keys {quoted} --scope admin"
            if asked
            else "faceverify keys create --scope admin"
        )
        if asked:
            return Check("keys file", "broken", f"{file} does not exist", create, True)
        return Check(
            "keys file",
            "missing",
            f"{file}: none yet (faceverify serve makes one on its first start)",
            create,
        )
    if file.is_dir():
        return Check(
            "keys file",
            "broken",
            f"{file} is a folder, not a keys file",
            "give the keys file to --keys",
            asked,
        )
    problems, fixes = _key_permissions(file)
    counted = _count_keys(file)
    if counted.startswith("unreadable"):
        problems.append(counted)
        fixes.append(f"restore {quoted}, or move it away and make new keys (faceverify keys create)")
    detail = f"{file}: {counted}" + (f"; {'; '.join(problems)}" if problems else "")
    if problems:
        return Check("keys file", "broken", detail, " && ".join(fixes), asked)
    if counted.startswith("0 keys"):
        return Check(
            "keys file",
            "warn",
            f"{detail}; the service accepts no request",
            "faceverify keys create --scope admin",
            asked,
        )
    return Check("keys file", "ok", detail, required=asked)


def _key_permissions(file: Path) -> tuple[list[str], list[str]]:
    """What is too open about the file and its folder, and the commands that close it."""
    if os.name != "posix":
        return [], []
    problems, fixes = [], []
    mode = stat.S_IMODE(file.stat().st_mode)
    if mode & 0o077:
        problems.append(f"file mode {mode:04o} lets group/others at it (0600 expected)")
        fixes.append(f"chmod 600 {shlex.quote(str(file))}")
    folder = file.resolve().parent
    info = folder.stat()
    folder_mode = stat.S_IMODE(info.st_mode)
    if folder_mode & 0o077:
        problems.append(f"folder {folder} mode {folder_mode:04o} lets group/others in (0700 expected)")
        if info.st_uid != os.getuid() or folder_mode & stat.S_ISVTX:  # /tmp and the like: not ours to close
            fixes.append(
                f"keep it in a folder of its own: mkdir -m 700 DIR && mv {shlex.quote(str(file))} DIR/"
            )
        else:
            fixes.append(f"chmod 700 {shlex.quote(str(folder))}")
    return problems, fixes


def _count_keys(file: Path) -> str:
    """``3 keys (1 admin, 2 read; 1 expired)``, or ``unreadable: ...``."""
    from faceverify.errors import ConfigError
    from faceverify.service.keys import SCOPES, KeyStore

    try:
        store = KeyStore(file)
        store.load()
        keys = store.records()
    except ConfigError as exc:
        return f"unreadable: {exc}"
    scopes = ", ".join(f"{n} {s}" for s in reversed(SCOPES) if (n := sum(k.scope == s for k in keys)))
    expired = sum(k.expired() for k in keys)
    extra = f"; {expired} expired" if expired else ""
    return f"{len(keys)} keys" + (f" ({scopes}{extra})" if keys else "")
