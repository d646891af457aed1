"""The files of a saved index, beside the gallery's database.

A saved index is its data files, ``index-<token>*`` (what each kind writes: faiss indexes,
the ``pq`` kind's vectors as ``.npy``), plus ``index.npz``: the face ids, owners, alive
mask, kind, dimension, the gallery's uuid and the token naming the data files. The
arrays are written last and put in place by one atomic rename, the commit point: a kill
at any moment leaves the old index or the new one, never a mix. Every file is owner-only.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path

import numpy as np

from faceverify.paths import atomic_path, open_private

#: The saved index: its arrays (the commit point), its data files, and the lock that
#: saves and scrubs take.
INDEX_ARRAYS, INDEX_GLOB, INDEX_LOCK = "index.npz", "index-*", "index.lock"

#: ``write(stem, written)``: writes an index's data files named ``<stem>*``, listing each
#: path in ``written`` before writing it (so a failed save leaves none of them behind).
DataWriter = Callable[[Path, list[Path]], None]


def commit_saved(folder: Path, write: DataWriter, **arrays: np.ndarray) -> None:
    """Write an index's data files through ``write``, then its ``arrays`` (with the new
    token), and swap them in atomically; older index files are deleted afterwards.
    Raises OSError when the folder cannot be written (nothing is left of the attempt)."""
    token = secrets.token_hex(8)
    written: list[Path] = []
    try:
        write(folder / f"index-{token}", written)
        with atomic_path(folder / INDEX_ARRAYS, suffix=".npz") as temporary:  # its rename: the commit point
            save_arrays(temporary, **arrays, token=np.array(token))
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    _drop_unreferenced(folder, keep=token)


def read_arrays(folder: Path) -> dict[str, np.ndarray]:
    """The saved arrays. Raises OSError (FileNotFoundError when none), ValueError or
    EOFError when they cannot be read."""
    with np.load(folder / INDEX_ARRAYS) as saved:
        return {key: saved[key] for key in saved.files}


def data_stem(folder: Path, arrays: dict[str, np.ndarray]) -> Path:
    """The common prefix of the data files the ``arrays`` name."""
    return folder / f"index-{arrays['token']}"


def save_arrays(path: Path, **arrays: np.ndarray) -> None:
    with open_private(path) as stream:
        np.savez(stream, **arrays)  # type: ignore[arg-type]  # the stubs read a key as allow_pickle


def replace_arrays(folder: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write changed arrays for the same data files, atomically."""
    with atomic_path(folder / INDEX_ARRAYS, suffix=".npz") as temporary:
        save_arrays(temporary, **arrays)


def delete_saved(folder: Path) -> None:
    """Delete the saved index: the arrays first (the commit point), then its data files."""
    for path in (folder / INDEX_ARRAYS, *folder.glob(INDEX_GLOB)):
        path.unlink(missing_ok=True)


def _drop_unreferenced(folder: Path, keep: str) -> None:
    """Delete older index files (and pre-IVF ``hnsw.*`` files); another process's newer
    save may have replaced ours meanwhile, so keep whatever the arrays now name too."""
    try:
        with np.load(folder / INDEX_ARRAYS) as saved:
            current = str(saved["token"])
    except (OSError, ValueError, KeyError, EOFError):
        current = keep
    for path in [*folder.glob(INDEX_GLOB), folder / "hnsw.faiss", folder / "hnsw.npz"]:
        # names are index-<token>.faiss, index-<token>.npy, index-<token>-<shard>.faiss
        if path.name[len("index-") :][:16] not in (keep, current):  # hnsw.* never matches
            path.unlink(missing_ok=True)
