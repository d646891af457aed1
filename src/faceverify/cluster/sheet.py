"""An HTML contact sheet of a photo library: one row of face thumbnails per group.

Largest groups first, named ones with their name; then the faces left alone and those too
poor to group. The page is one self-contained file (thumbnails inlined as JPEG data, no
scripts, no external resources), written owner-only: it shows people's faces.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import TYPE_CHECKING

from faceverify.paths import atomic_path

if TYPE_CHECKING:
    from faceverify.cluster.library import Library, LibraryFace

#: Thumbnails shown per group (the row says how many more there are).
PER_GROUP = 24
#: Thumbnail side in pixels.
SIZE = 96

_STYLE = f"""
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }}
h1 {{ font-size: 1.3rem; }} h2 {{ font-size: 1rem; margin: 1.2rem 0 0.3rem; }}
.row {{ display: flex; flex-wrap: wrap; gap: 4px; }}
.row figure {{ margin: 0; text-align: center; font-size: 0.7rem; color: #666; }}
.row img {{ width: {SIZE}px; height: {SIZE}px; border-radius: 4px; display: block; }}
.more {{ align-self: center; padding: 0 0.5rem; color: #666; }}
.unnamed {{ color: #888; font-weight: normal; }}
"""


def write_contact_sheet(library: Library, path: str | Path, *, per_group: int = PER_GROUP) -> Path:
    """Write the contact sheet of ``library`` to ``path`` (HTML); returns the path."""
    groups = library.groups(sample=0)  # each group's faces are read below, with their photos
    sections = []
    for group in groups:
        title = html.escape(group.name) if group.name else f'<span class="unnamed">group {group.id}</span>'
        faces = library.faces(group.id)[:per_group]
        sections.append(_section(library, f"{title} &middot; {group.faces} faces", faces, group.faces))
    alone = library.faces(ungrouped=True)
    poor = [f for f in alone if f.quality < library.min_quality and not f.pinned]
    lone = [f for f in alone if f not in poor]
    if lone:
        sections.append(_section(library, f"alone &middot; {len(lone)} faces", lone[:per_group], len(lone)))
    if poor:
        sections.append(
            _section(library, f"too poor to group &middot; {len(poor)} faces", poor[:per_group], len(poor))
        )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>faceverify contact sheet</title>"
        f"<style>{_STYLE}</style></head><body><h1>{len(groups)} groups</h1>{''.join(sections)}</body></html>"
    )
    target = Path(path)
    with atomic_path(target, private=True) as temporary:
        temporary.write_text(page, encoding="utf-8")
    return target


def _section(library: Library, title: str, faces: list[LibraryFace], total: int) -> str:
    cells = []
    for face in faces:
        try:
            data = base64.b64encode(library.face_crop(face.id, size=SIZE)).decode()
            image = f'<img src="data:image/jpeg;base64,{data}" alt="face {face.id}">'
        except Exception:  # a photo moved since the scan: the sheet still shows the rest
            image = f'<img alt="face {face.id}: its photo cannot be read">'
        cells.append(
            f'<figure title="{html.escape(face.photo)}">{image}<figcaption>{face.id}</figcaption></figure>'
        )
    more = f'<span class="more">+{total - len(faces)}</span>' if total > len(faces) else ""
    return f"<h2>{title}</h2><div class='row'>{''.join(cells)}{more}</div>"
