"""Photo libraries: every face of a folder tree, grouped by person, with corrections that stick.

``method`` (how faces are grouped, thresholds from the model), ``neighbours`` (each face's
nearest faces), ``tables`` (the library's SQL beside the gallery's), ``scan`` (reading a
folder), ``corrections`` (name, merge, split, move, reject), ``library`` (:class:`Library`,
which puts them together), ``sheet`` (the HTML contact sheet).

May import: the gallery and everything below it (faces, photos, embed, runtime, decode);
never evaluation, training, the service or the CLI, which sit on top of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from faceverify.cluster.library import GroupInfo, GroupingReport, Library, LibraryFace, open_library
    from faceverify.cluster.method import Thresholds
    from faceverify.cluster.scan import ScanReport
    from faceverify.errors import CorrectionError

_LAZY = {
    "CorrectionError": "faceverify.errors",
    "GroupInfo": "faceverify.cluster.library",
    "GroupingReport": "faceverify.cluster.library",
    "Library": "faceverify.cluster.library",
    "LibraryFace": "faceverify.cluster.library",
    "open_library": "faceverify.cluster.library",
    "Thresholds": "faceverify.cluster.method",
    "ScanReport": "faceverify.cluster.scan",
}
__all__ = [
    "CorrectionError",
    "GroupInfo",
    "GroupingReport",
    "Library",
    "LibraryFace",
    "ScanReport",
    "Thresholds",
    "open_library",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'faceverify.cluster' has no attribute {name!r}")
