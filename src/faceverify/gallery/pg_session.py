"""Connections to PostgreSQL as faceverify makes them: every session with a statement
timeout and a lock timeout, pools that replace dropped connections, and the driver's
errors turned into :class:`~faceverify.errors.GalleryError` s that say what to do.

Shared by the gallery store (:mod:`faceverify.gallery.postgres`) and the catalogue of
named galleries (:class:`faceverify.gallery.catalog.PostgresCatalog`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

from faceverify.errors import GalleryError

#: Longest a statement may run, and wait for a lock, before it is cancelled (seconds). A
#: search of millions of faces takes milliseconds; 30 s means something is wrong.
STATEMENT_TIMEOUT_S = 30.0
LOCK_TIMEOUT_S = 10.0
#: Seconds to wait for the server to accept a new connection.
CONNECT_TIMEOUT_S = 10


class PgConnector:
    """How faceverify talks to one PostgreSQL URL: its connections, their limits, and
    the errors they turn into (shared by the store and the catalogue).

    Args:
        url: ``postgresql://user:password@host:port/database``.
        statement_timeout, lock_timeout: seconds, set on every session.
    """

    def __init__(
        self, url: str, statement_timeout: float = STATEMENT_TIMEOUT_S, lock_timeout: float = LOCK_TIMEOUT_S
    ) -> None:
        self.url, self.location = url, _redact(url)
        self.statement_timeout = _seconds("statement_timeout", statement_timeout)
        self.lock_timeout = _seconds("lock_timeout", lock_timeout)

    def connect(self) -> Any:
        """One connection of its own (autocommit, with the limits set); unreachable is a
        :class:`GalleryError` with the server's reason, without the password."""
        import psycopg

        try:
            db = psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        except psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise GalleryError(f"cannot connect to PostgreSQL at {self.location}: {reason}") from exc
        with self.errors():
            self.configure(db)
        return db

    def configure(self, db: Any, *, vector: bool = False) -> None:
        """Set the session's limits (and teach it pgvector's types, when ``vector``)."""
        db.execute(
            "SELECT set_config('statement_timeout', %s, false), set_config('lock_timeout', %s, false)",
            (_milliseconds(self.statement_timeout), _milliseconds(self.lock_timeout)),
        )
        if vector:
            from pgvector.psycopg import register_vector

            register_vector(db)

    def pool(self, min_size: int, max_size: int, *, vector: bool = False) -> PgPool:
        """An open pool whose connections are checked before use: one the server dropped
        (a restart, a failover) is replaced instead of failing the call."""
        from psycopg_pool import ConnectionPool

        _check_pool(min_size, max_size)
        pool: Any = ConnectionPool(
            self.url,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S},
            min_size=min_size,
            max_size=max_size,
            open=False,
            configure=partial(self.configure, vector=vector),
            check=ConnectionPool.check_connection,
            timeout=self.statement_timeout,
            name=f"faceverify {self.location}",
            num_workers=1,
        )
        try:
            with self.errors():
                pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
        except BaseException:
            pool.close()
            raise
        return PgPool(pool, self)

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Turn the driver's errors into :class:`GalleryError` s that say what to do."""
        import psycopg
        from psycopg_pool import PoolTimeout

        try:
            yield
        except psycopg.errors.UndefinedFile as exc:
            raise GalleryError(
                f"PostgreSQL at {self.location} lacks the pgvector extension; "
                "install it (CREATE EXTENSION vector)"
            ) from exc
        except psycopg.errors.LockNotAvailable as exc:
            raise GalleryError(
                f"PostgreSQL at {self.location}: waited more than {self.lock_timeout:g} s (lock_timeout) "
                "for a lock another session holds, so nothing was changed; retry, or look for a long "
                "transaction in pg_stat_activity"
            ) from exc
        except psycopg.errors.QueryCanceled as exc:
            raise GalleryError(
                f"PostgreSQL at {self.location}: a statement ran longer than {self.statement_timeout:g} s "
                "(statement_timeout) and was cancelled, so nothing was changed; retry when the server is "
                "less busy, or raise statement_timeout"
            ) from exc
        except PoolTimeout as exc:
            raise GalleryError(
                f"PostgreSQL at {self.location}: no connection came free or could be opened within "
                f"{self.statement_timeout:g} s; check that the server is up, or raise pool_max if all "
                "are busy"
            ) from exc
        except psycopg.OperationalError as exc:
            raise GalleryError(f"PostgreSQL at {self.location} failed: {str(exc).strip()}") from exc
        except psycopg.Error as exc:  # the server refused a statement: its own words say why
            message = exc.diag.message_primary or str(exc).strip() or type(exc).__name__
            raise GalleryError(f"PostgreSQL at {self.location} refused: {message}") from exc


class PgPool:
    """A psycopg pool whose connections come with :meth:`PgConnector.errors`: each call
    borrows one for its statement or transaction and gives it back."""

    def __init__(self, pool: Any, link: PgConnector) -> None:
        self._pool, self._link = pool, link

    @contextmanager
    def session(self) -> Iterator[Any]:
        """A connection in autocommit mode: each statement is its own transaction."""
        with self._link.errors(), self._pool.connection() as db:
            yield db

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """A connection inside one transaction: committed at the end, rolled back on error."""
        with self.session() as db, db.transaction():
            yield db

    def close(self) -> None:
        self._pool.close()


def _seconds(what: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise GalleryError(f"{what} must be a positive number of seconds, not {value!r}")
    return float(value)


def _check_pool(min_size: int, max_size: int) -> None:
    sizes = (min_size, max_size)
    if (
        any(isinstance(n, bool) or not isinstance(n, int) for n in sizes)
        or not 0 <= min_size <= max_size >= 1
    ):
        raise GalleryError(
            f"pool sizes pool_min={min_size!r}, pool_max={max_size!r} are not valid; "
            "use whole numbers with 0 <= pool_min <= pool_max and pool_max >= 1"
        )


def _milliseconds(seconds: float) -> str:
    """A PostgreSQL duration; never 0, which would mean no limit at all."""
    return f"{max(1, round(seconds * 1000))}ms"


def _redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    head, sep, tail = url.partition("@")
    if not sep or ":" not in head.split("//", 1)[-1]:
        return url
    scheme, _, credentials = head.partition("//")
    user = credentials.split(":", 1)[0]
    return f"{scheme}//{user}:***@{tail}"
