"""What the service opens once, in its lifespan: the model, the batcher, the galleries.

Galleries are opened on first use and kept open, shared by every request's thread: both
stores take calls from many threads at once (the embedded one opens a connection per
thread, PostgreSQL's draws from a pool). A gallery deleted meanwhile waits for the calls
under way, then answers "unknown gallery" to the next ones.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from faceverify.errors import GalleryError, OverloadedError, UnknownGalleryError
from faceverify.gallery.base import AddResult, AuditEntry, Change, GalleryStore, Match, PersonInfo, StoredFace
from faceverify.gallery.catalog import GalleryCatalog, open_catalog
from faceverify.gallery.gallery import Gallery
from faceverify.photos import FaceOptions
from faceverify.runtime.base import Embedder
from faceverify.service.batcher import BatchedEmbedder, Batcher
from faceverify.service.keys import KeyStore
from faceverify.service.metrics import Metrics
from faceverify.service.settings import ServiceSettings
from faceverify.service.uploads import PhotoReader

log = logging.getLogger("faceverify.service")
T = TypeVar("T")


class SharedStore(GalleryStore):
    """A store shared by requests: calls run at once; :meth:`close` waits for those under
    way (closing a store under a running call is a crash in SQLite), then it is an
    unknown gallery."""

    def __init__(self, inner: GalleryStore, name: str) -> None:
        self.inner, self.name = inner, name
        self.location, self.uuid = inner.location, inner.uuid
        self._idle = threading.Condition()
        self._running = 0
        self._closed = False

    def _call(self, method: Callable[..., T], *args: Any) -> T:
        with self._idle:
            if self._closed:
                raise UnknownGalleryError(f"gallery {self.name!r} was deleted")
            self._running += 1
        try:
            return method(*args)
        finally:
            with self._idle:
                self._running -= 1
                self._idle.notify_all()

    def manifest(self) -> dict[str, Any] | None:
        return self._call(self.inner.manifest)

    def bind(self, manifest: dict[str, Any]) -> None:
        self._call(self.inner.bind, manifest)

    def add(
        self,
        name: str,
        faces: Iterable[StoredFace],
        meta: dict[str, Any] | None,
        *,
        create: bool | None = None,
        change: Change | None = None,
    ) -> AddResult:
        return self._call(lambda: self.inner.add(name, list(faces), meta, create=create, change=change))

    def remove(self, name: str, *, change: Change | None = None) -> int:
        return self._call(lambda: self.inner.remove(name, change=change))

    def remove_id(self, person_id: int, *, change: Change | None = None) -> tuple[str, int]:
        return self._call(lambda: self.inner.remove_id(person_id, change=change))

    def remove_faces(self, name: str, image_sha256: Sequence[str], *, change: Change | None = None) -> int:
        return self._call(lambda: self.inner.remove_faces(name, image_sha256, change=change))

    @property
    def dialect(self) -> str:  # type: ignore[override]
        return self.inner.dialect

    def sql_write(self) -> AbstractContextManager[Any]:
        return self._during(self.inner.sql_write)

    def sql_read(self) -> AbstractContextManager[Any]:
        return self._during(self.inner.sql_read)

    @contextmanager
    def _during(self, opener: Callable[[], AbstractContextManager[Any]]) -> Iterator[Any]:
        """A connection held as one running call: :meth:`close` waits for it."""
        with self._idle:
            if self._closed:
                raise UnknownGalleryError(f"gallery {self.name!r} was deleted")
            self._running += 1
        try:
            with opener() as db:
                yield db
        finally:
            with self._idle:
                self._running -= 1
                self._idle.notify_all()

    def record(self, action: str, change: Change | None = None) -> None:
        self._call(self.inner.record, action, change)

    def audit(self, *, after: int = 0, limit: int = 1000) -> list[AuditEntry]:
        return self._call(lambda: self.inner.audit(after=after, limit=limit))

    def people(self) -> list[PersonInfo]:
        return self._call(self.inner.people)

    def faces_of(self, name: str) -> list[tuple[str, str, np.ndarray]]:
        return self._call(self.inner.faces_of, name)

    def search(self, query: np.ndarray, top_k: int, match: str) -> list[Match]:
        return self._call(self.inner.search, query, top_k, match)

    def close(self) -> None:
        with self._idle:
            if self._closed:
                return
            self._closed = True
            self._idle.wait_for(lambda: self._running == 0)
        self.inner.close()


class Galleries:
    """The catalogue's galleries, each opened once and shared by all requests.

    Args:
        catalog: where the galleries live.
        model: the (batched) model every gallery must have been built with.
        match: ``best`` or ``centroid``, as for :class:`~faceverify.gallery.Gallery`.
        faces: how faces are found in photos.
    """

    def __init__(
        self,
        catalog: GalleryCatalog,
        model: Embedder,
        match: str,
        faces: FaceOptions,
        lock_timeout_s: float = 30.0,
    ) -> None:
        self.catalog, self.model, self.match, self.faces = catalog, model, match, faces
        self.lock_timeout_s = lock_timeout_s
        self._open: dict[str, Gallery] = {}
        self._writers: dict[str, threading.Lock] = {}
        self._lock = threading.RLock()

    def names(self) -> list[str]:
        with self._lock:
            return self.catalog.names()

    def create(self, name: str, *, change: Change | None = None) -> None:
        with self._lock:
            self.catalog.create(name, change=change)

    def delete(self, name: str, *, change: Change | None = None) -> None:
        with self._lock:
            self._forget(name)
            self.catalog.delete(name, change=change)

    def get(self, name: str) -> Gallery:
        """The gallery called ``name``; 404 if absent, 409 if built with another model.

        The one kept open is used while its uuid is the gallery's: a gallery deleted and
        made again by another worker or the CLI is a new one, opened afresh."""
        try:  # read outside the lock: requests to other galleries never wait on it
            current: str | None = self.catalog.uuid(name)
        except GalleryError:  # unreadable for a moment (busy): no sign that it changed
            current = "unchanged"
        with self._lock:
            gallery = self._open.get(name)
            if gallery is not None and current in ("unchanged", gallery.store.uuid):
                return gallery
            self._forget(name)
            store = SharedStore(self.catalog.open(name), name)
            try:
                gallery = Gallery(store, self.model, match=self.match, faces=self.faces)
            except BaseException:
                store.close()
                raise
            self._open[name] = gallery
            return gallery

    @contextlib.contextmanager
    def writing(self, name: str) -> Iterator[Gallery]:
        """The gallery, with this process's other writers to it kept out meanwhile (for at
        most ``lock_timeout_s``: then 503, rather than a request stuck behind another)."""
        gallery = self.get(name)
        with self._lock:
            writer = self._writers.setdefault(name, threading.Lock())
        if not writer.acquire(timeout=self.lock_timeout_s):
            raise OverloadedError(
                f"another write to gallery {name!r} has taken over {self.lock_timeout_s:g} s; retry later"
            )
        try:
            yield gallery
        finally:
            writer.release()

    def _forget(self, name: str) -> None:
        gallery = self._open.pop(name, None)
        if gallery is not None:
            gallery.close()

    def close(self) -> None:
        with self._lock:
            for name in list(self._open):
                self._forget(name)
            self.catalog.close()


@dataclass
class ServiceState:
    """Everything requests share; built by :meth:`open` in the lifespan."""

    settings: ServiceSettings
    model: BatchedEmbedder
    batcher: Batcher
    galleries: Galleries
    keys: KeyStore
    photos: PhotoReader
    metrics: Metrics

    @classmethod
    def open(cls, settings: ServiceSettings, metrics: Metrics, keys: KeyStore) -> ServiceState:
        from faceverify.runtime.build import build_from_spec

        if not settings.insecure:
            keys.load()
            if not keys.records():
                log.warning(
                    "no API keys in %s: every /v1 request will be refused; make one with "
                    "`faceverify keys create --scope admin`",
                    keys.path,
                )
        if settings.threads is not None:
            from faceverify.runtime.onnx_backend import set_threads

            set_threads(settings.threads)
        inner = build_from_spec(settings.spec)
        batcher = Batcher(
            inner.embed,
            settings.batching,
            wait_timeout_s=settings.limits.timeout_s,
            on_batch=metrics.batch_size.observe,
        )
        model = BatchedEmbedder(inner, batcher)
        model.weights_sha256()  # hash the weights now, not in the first request
        metrics.queue.set_function(lambda: batcher.queued)
        catalog = open_catalog(settings.db)
        batcher.start()
        faces = settings.faces
        photos = PhotoReader(settings.limits, decoders=max(2, os.cpu_count() or 2), faces=faces)
        log.info(
            "serving %s (%d-dim) with galleries in %s; batching %s",
            model.name,
            model.embedding_dim,
            catalog.location,
            f"up to {settings.batching.max_batch}" if settings.batching.enabled else "off",
        )
        galleries = Galleries(catalog, model, settings.match, faces, lock_timeout_s=settings.limits.timeout_s)
        return cls(settings, model, batcher, galleries, keys, photos, metrics)

    def close(self) -> None:
        self.batcher.stop()
        self.galleries.close()

    def hidden_strings(self) -> list[tuple[str, str]]:
        """Server paths that must not appear in answers, and what replaces them."""
        catalog = self.galleries.catalog
        hidden = [(catalog.location.rstrip("/") + "/", ""), (catalog.location, "<galleries>")]
        if self.model.weights_file is not None:
            hidden.append((str(self.model.weights_file), "<weights>"))
        hidden.append((str(self.keys.path), "<keys>"))
        return hidden
