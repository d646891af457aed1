"""The user's corrections to a photo library, and the rules that make them stick.

Each correction is one transaction of the library's tables; where it names people it also
writes the gallery (enrols or removes faces, each in the gallery's own transaction with its
audit entry), the gallery first, so a crash in between leaves a gallery change the next
correction or run brings the library up to (names are looked up, not cached).

* ``name(group, name)``: the group becomes the gallery person ``name``; its faces are
  confirmed (pinned) and enrolled, so ``identify`` finds them.
* ``merge(target, others)``: one group; every face confirmed.
* ``split(group, faces)``: the faces leave for a new group; both groups are confirmed and
  kept apart (they never merge again by themselves).
* ``move(face, group)``: the face is placed there (or in a new group) and never moves back.
* ``reject(face, group)``: "not this person": the face leaves the group and never joins it
  again; the rest of the group is confirmed (the user has looked at it).

A correction that contradicts an earlier one (merging a group with one a face of which was
marked "not" it, moving a face into a group it was marked "not") is refused, naming both.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from faceverify.cluster.tables import Sql, marks, new_group
from faceverify.errors import CorrectionError, UnknownFaceError, UnknownGroupError, UnknownPersonError
from faceverify.gallery.base import check_name
from faceverify.paths import timestamp

if TYPE_CHECKING:
    from faceverify.gallery.base import Change, GalleryStore
    from faceverify.gallery.gallery import Gallery


class Corrections:
    """The correction methods of :class:`~faceverify.cluster.library.Library`."""

    gallery: Gallery
    store: GalleryStore
    sql: Sql
    change: Change

    def name(self, group: int, name: str) -> int:
        """Name a group: it becomes (or joins) the gallery person ``name``. Returns the
        number of faces enrolled. A name enrolled already, and named for no other group,
        takes the group's faces; a name another group holds is refused (merge instead)."""
        name = check_name(name)
        row = self._group_row(group)
        if row[1] is not None:
            current = self._person_name(int(row[1]))
            if current == name:
                return 0
            raise CorrectionError(
                f"group {group} is named {current!r} already; a name stays with its group "
                f"(erase {current!r} from the gallery to name the faces again)"
            )
        with self.store.sql_read() as db:
            holder = self.sql.rows(
                db,
                "SELECT g.id FROM {groups} g JOIN {people} p ON p.id = g.person_id WHERE p.name = ?",
                (name,),
            )
        if holder:
            raise CorrectionError(
                f"{name!r} is the name of group {holder[0][0]} already; merge group {group} into it instead"
            )
        with self.store.sql_write() as db:  # confirmed from now on, even if enrolling fails below
            self.sql.run(db, "UPDATE {faces} SET pinned = 1 WHERE group_id = ?", (group,))
            self.sql.run(db, "UPDATE {groups} SET anchored = 1 WHERE id = ?", (group,))
        added = self._enrol(name, self._face_ids(group), create=None)
        person_id = self._person_id(name)
        with self.store.sql_write() as db:
            self.sql.run(db, "UPDATE {groups} SET person_id = ? WHERE id = ?", (person_id, group))
        return added

    def merge(self, target: int, others: Iterable[int]) -> int:
        """Merge ``others`` into ``target`` (a named group among them keeps its name and
        id); returns the id of the group they are now."""
        ids = [target, *[int(o) for o in others if int(o) != target]]
        rows = {g: self._group_row(g) for g in ids}
        named = [g for g in ids if rows[g][1] is not None]
        if len(named) > 1:
            names = ", ".join(f"group {g} ({self._person_name(int(rows[g][1]))!r})" for g in named)
            raise CorrectionError(
                f"{names} are named differently; a merge keeps one name, so erase one person first"
            )
        survivor = named[0] if named else target
        with self.store.sql_read() as db:
            for a in ids:
                for b in ids:
                    if a == b:
                        continue
                    self._refuse_rejected(db, a, b)
                    if a < b and self.sql.rows(
                        db, "SELECT 1 FROM {apart} WHERE (a = ? AND b = ?) OR (a = ? AND b = ?)", (a, b, b, a)
                    ):
                        raise CorrectionError(
                            f"groups {a} and {b} were split apart by a correction; a merge would undo it"
                        )
        moving = [f for g in ids if g != survivor for f in self._face_ids(g)]
        self._check_photos(moving + self._face_ids(survivor), f"group {survivor}")
        with self.store.sql_write() as db:
            for g in ids:
                if g != survivor:
                    self.sql.run(
                        db, "UPDATE {faces} SET group_id = ?, pinned = 1 WHERE group_id = ?", (survivor, g)
                    )
                    _move_marks(self.sql, db, g, survivor)
                    self.sql.run(db, "DELETE FROM {groups} WHERE id = ?", (g,))
            self.sql.run(db, "UPDATE {faces} SET pinned = 1 WHERE group_id = ?", (survivor,))
            self.sql.run(db, "UPDATE {groups} SET anchored = 1 WHERE id = ?", (survivor,))
        self._enrol_confirmed(survivor)
        return survivor

    def split(self, group: int, faces: Iterable[int]) -> int:
        """Move ``faces`` of ``group`` to a new group, kept apart from it; returns its id."""
        leaving = sorted({int(f) for f in faces})
        for face in leaving:
            self._face_group(face)  # an unknown face is an error of its own
        staying = [f for f in self._face_ids(group) if f not in leaving]
        self._group_row(group)
        outside = sorted(set(leaving) - set(self._face_ids(group)))
        if outside or not leaving:
            raise CorrectionError(
                f"faces {outside or '(none)'} are not in group {group}; "
                "split takes some of the group's own faces"
            )
        if not staying:
            raise CorrectionError(f"a split must leave some faces in group {group}; move them instead")
        self._unenrol(leaving)
        with self.store.sql_write() as db:
            new = new_group(self.sql, db, timestamp(), anchored=True)
            self.sql.run(
                db,
                f"UPDATE {{faces}} SET group_id = ?, pinned = 1 WHERE id IN ({marks(len(leaving))})",
                (new, *leaving),
            )
            self.sql.run(db, "UPDATE {faces} SET pinned = 1 WHERE group_id = ?", (group,))
            self.sql.run(db, "UPDATE {groups} SET anchored = 1 WHERE id = ?", (group,))
            self.sql.run(db, "INSERT INTO {apart} (a, b) VALUES (?, ?)", (group, new))
        self._enrol_confirmed(group)
        return new

    def move(self, face: int, group: int | None) -> int:
        """Put ``face`` in ``group`` (None: a new group of its own) for good; returns the group."""
        current = self._face_group(face)
        if group is not None:
            self._group_row(group)
            with self.store.sql_read() as db:
                if self.sql.rows(
                    db, "SELECT 1 FROM {rejections} WHERE face_id = ? AND group_id = ?", (face, group)
                ):
                    raise CorrectionError(
                        f"face {face} was marked not the person of group {group}; "
                        "a move there would contradict it"
                    )
            self._check_photos([face, *self._face_ids(group)], f"group {group}")
        if current is not None and current == group:
            with self.store.sql_write() as db:
                self.sql.run(db, "UPDATE {faces} SET pinned = 1 WHERE id = ?", (face,))
            self._enrol_confirmed(group)
            return group
        self._unenrol([face])
        with self.store.sql_write() as db:
            target = group if group is not None else new_group(self.sql, db, timestamp(), anchored=True)
            self.sql.run(db, "UPDATE {faces} SET group_id = ?, pinned = 1 WHERE id = ?", (target, face))
            self.sql.run(db, "UPDATE {groups} SET anchored = 1 WHERE id = ?", (target,))
        self._enrol_confirmed(target)
        return target

    def reject(self, face: int, group: int) -> None:
        """Mark ``face`` as not the person of ``group``: it leaves the group (if in it) and
        never joins it again; the group's other faces are confirmed."""
        self._group_row(group)
        current = self._face_group(face)
        if current == group:
            self._unenrol([face])
        with self.store.sql_write() as db:
            if not self.sql.rows(
                db, "SELECT 1 FROM {rejections} WHERE face_id = ? AND group_id = ?", (face, group)
            ):
                self.sql.run(db, "INSERT INTO {rejections} (face_id, group_id) VALUES (?, ?)", (face, group))
            if current == group:
                self.sql.run(db, "UPDATE {faces} SET group_id = NULL, pinned = 0 WHERE id = ?", (face,))
            self.sql.run(db, "UPDATE {faces} SET pinned = 1 WHERE group_id = ?", (group,))
            self.sql.run(db, "UPDATE {groups} SET anchored = 1 WHERE id = ?", (group,))
        self._enrol_confirmed(group)

    # ---- helpers ------------------------------------------------------------------------

    def _enrol_confirmed(self, group: int) -> None:
        """A named group's person gets every confirmed face of the group not enrolled yet
        (a merge, split, move or mark confirms faces; ``identify`` then finds them)."""
        person = self._group_row(group)[1]
        if person is None:
            return
        with self.store.sql_read() as db:
            rows = self.sql.rows(
                db, "SELECT id FROM {faces} WHERE group_id = ? AND pinned = 1 AND enrolled = 0", (group,)
            )
        if rows:
            self._enrol(self._person_name(int(person)), [int(r[0]) for r in rows], create=False)

    def _group_row(self, group: int) -> tuple[int, Any]:
        with self.store.sql_read() as db:
            row = self.sql.rows(db, "SELECT id, person_id FROM {groups} WHERE id = ?", (int(group),))
        if not row:
            raise UnknownGroupError(f"no group {group} in this library; see `faceverify people list`")
        return int(row[0][0]), row[0][1]

    def _face_group(self, face: int) -> int | None:
        with self.store.sql_read() as db:
            row = self.sql.rows(db, "SELECT group_id FROM {faces} WHERE id = ?", (int(face),))
        if not row:
            raise UnknownFaceError(f"no face {face} in this library; see `faceverify people faces`")
        return None if row[0][0] is None else int(row[0][0])

    def _face_ids(self, group: int) -> list[int]:
        with self.store.sql_read() as db:
            return [
                int(r[0])
                for r in self.sql.rows(db, "SELECT id FROM {faces} WHERE group_id = ? ORDER BY id", (group,))
            ]

    def _person_name(self, person_id: int) -> str:
        with self.store.sql_read() as db:
            row = self.sql.rows(db, "SELECT name FROM {people} WHERE id = ?", (person_id,))
        return str(row[0][0]) if row else f"person {person_id}"

    def _person_id(self, name: str) -> int:
        with self.store.sql_read() as db:
            row = self.sql.rows(db, "SELECT id FROM {people} WHERE name = ?", (name,))
        if not row:
            raise UnknownPersonError(f"no person named {name!r} in gallery {self.store.location}")
        return int(row[0][0])

    def _refuse_rejected(self, db: Any, group: int, other: int) -> None:
        """Refuse to merge ``other`` into ``group`` when one of its faces was marked not ``group``."""
        row = self.sql.rows(
            db,
            "SELECT r.face_id FROM {rejections} r JOIN {faces} f ON f.id = r.face_id "
            "WHERE r.group_id = ? AND f.group_id = ? LIMIT 1",
            (group, other),
        )
        if row:
            raise CorrectionError(
                f"face {row[0][0]} of group {other} was marked not the person of group {group}; "
                f"merging groups {group} and {other} would contradict it"
            )

    def _check_photos(self, faces: list[int], where: str) -> None:
        """One photo shows a person once: refuse a group holding two faces of one photo."""
        if not faces:
            return
        with self.store.sql_read() as db:
            rows = self.sql.rows(
                db, f"SELECT photo_id, id FROM {{faces}} WHERE id IN ({marks(len(faces))}) ORDER BY id", faces
            )
        seen: dict[int, int] = {}
        for photo, fid in rows:
            if int(photo) in seen:
                raise CorrectionError(
                    f"faces {seen[int(photo)]} and {fid} are in one photo; {where} cannot hold both "
                    "(a photo shows a person once)"
                )
            seen[int(photo)] = int(fid)

    def _enrol(self, name: str, faces: list[int], *, create: bool | None) -> int:
        """Enrol these library faces as gallery faces of ``name``."""
        from faceverify.gallery.base import StoredFace

        if not faces:
            if create is None and not self._person_exists(name):
                raise CorrectionError(f"group for {name!r} has no faces to enrol")
            return 0
        with self.store.sql_read() as db:
            rows = self.sql.rows(
                db,
                "SELECT f.id, f.key, f.vector, p.path FROM {faces} f "
                f"JOIN {{photos}} p ON p.id = f.photo_id "
                f"WHERE f.id IN ({marks(len(faces))})",
                faces,
            )
        stored = [StoredFace(np.frombuffer(bytes(r[2]), dtype="<f4"), str(r[1]), str(r[3])) for r in rows]
        result = self.store.add(name, stored, None, create=create, change=self.change)
        with self.store.sql_write() as db:
            self.sql.run(db, f"UPDATE {{faces}} SET enrolled = 1 WHERE id IN ({marks(len(faces))})", faces)
        return result.added

    def _person_exists(self, name: str) -> bool:
        with self.store.sql_read() as db:
            return bool(self.sql.rows(db, "SELECT 1 FROM {people} WHERE name = ?", (name,)))

    def _unenrol(self, faces: list[int]) -> None:
        """Take enrolled faces away from their gallery person: the gallery first (its own
        transaction, audited), then the library's flags. Called outside any transaction."""
        if not faces:
            return
        with self.store.sql_read() as db:
            rows = self.sql.rows(
                db,
                f"SELECT f.id, f.key, p.name FROM {{faces}} f JOIN {{groups}} g ON g.id = f.group_id "
                "JOIN {people} p ON p.id = g.person_id "
                f"WHERE f.enrolled = 1 AND f.id IN ({marks(len(faces))})",
                faces,
            )
        by_person: dict[str, list[str]] = {}
        for _, key, name in rows:
            by_person.setdefault(str(name), []).append(str(key))
        for name, keys in by_person.items():
            self.store.remove_faces(name, keys, change=self.change)
        if rows:
            ids = [int(r[0]) for r in rows]
            with self.store.sql_write() as db:
                self.sql.run(db, f"UPDATE {{faces}} SET enrolled = 0 WHERE id IN ({marks(len(ids))})", ids)


def _move_marks(sql: Sql, db: Any, gone: int, survivor: int) -> None:
    """A merged-away group's "not this person" marks and "kept apart" pairs become the
    survivor's (a mark both held stays one)."""
    sql.run(
        db,
        "INSERT INTO {rejections} (face_id, group_id) SELECT face_id, ? FROM {rejections} "
        "WHERE group_id = ? ON CONFLICT DO NOTHING",
        (survivor, gone),
    )
    sql.run(
        db,
        "INSERT INTO {apart} (a, b) SELECT ?, b FROM {apart} WHERE a = ? AND b <> ? ON CONFLICT DO NOTHING",
        (survivor, gone, survivor),
    )
    sql.run(
        db,
        "INSERT INTO {apart} (a, b) SELECT a, ? FROM {apart} WHERE b = ? AND a <> ? ON CONFLICT DO NOTHING",
        (survivor, gone, survivor),
    )
