"""Training data from your own photos: detect, align and crop a folder-per-person tree.

``PHOTOS/<person>/*.jpg`` becomes the course layout that ``faceverify train`` reads::

    OUT/classification_train/<person>/<photo>.png   training people
    OUT/classification_val/<person>/<photo>.png     the same people, other photos
    OUT/verification_data/<person>/<photo>.png      held-out people, never trained on
    OUT/verification_pairs_val.txt                  ``a b 1|0`` over the held-out people
    OUT/verification_pairs_test.txt                 the same pairs without labels
    OUT/faces/<person>/<photo>.png                  every aligned face (the others link here)
    OUT/prepare.json                                the options, and each photo's fate

Every photo is accounted for in ``prepare.json``: where its face went, or why it was
skipped (no face, several faces, unreadable, its person has too few photos). Output
names follow the source names, so each crop can be traced back to its photo.

A rerun is cheap and changes nothing it need not: photos whose file (size and
modification time) and crop options are unchanged keep their aligned face and are not
detected again; only the split is redone, from the seed. So a rerun with another
``--seed`` or ``--val-share`` re-divides in seconds, and an interrupted run resumes.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceverify import __version__
from faceverify.data.split import Split, SplitOptions, split_people
from faceverify.errors import ConfigError, ImageError
from faceverify.paths import atomic_path, atomic_write_text, timestamp
from faceverify.photos import FaceOptions, SeveralFaces

if TYPE_CHECKING:
    from faceverify.faces.align import Template

log = logging.getLogger(__name__)

#: Crop side -> (template, the models it suits).
SIZES: dict[int, tuple[str, str]] = {
    64: ("dlib64", "the course's face_resnet (64x64 inputs)"),
    112: ("arcface112", "ArcFace-style models and ConvNeXt at model.input_size=112"),
    150: ("dlib150", "fine-tuning dlib_resnet_v1 (dlib's own 150x150 chips)"),
}
MANIFEST = "prepare.json"
FACES = "faces"
TRAIN, VAL, VERIFICATION = "classification_train", "classification_val", "verification_data"
PAIRS_VAL, PAIRS_TEST = "verification_pairs_val.txt", "verification_pairs_test.txt"
#: What prepare writes besides the manifest and the face cache: replaced on every run.
OUTPUTS = (TRAIN, VAL, VERIFICATION, PAIRS_VAL, PAIRS_TEST)
#: Outcomes of a photo; the first three mean it was used. (A manifest left by an interrupted
#: or failed run also has "cropped": aligned, not yet assigned.)
STATUSES = (
    "train",
    "val",
    "verification",
    "no_face",
    "several_faces",
    "unreadable",
    "too_few_photos",
    "no_person",
)
#: How the summary line names each reason to skip a photo.
_SKIPPED = {
    "no_face": "without a face",
    "several_faces": "with several faces",
    "unreadable": "unreadable",
    "too_few_photos": "of people with too few photos",
    "no_person": "outside person folders",
}
#: Seconds between manifest saves while cropping, so an interrupted run resumes (by time,
#: not by count: rewriting a manifest of 10^5 photos every few hundred would dominate).
_SAVE_EVERY_S = 30.0


@dataclass(frozen=True)
class CropOptions:
    """How faces are cut out of the photos.

    Attributes:
        size: 64 (dlib-style chip scaled to 64 px: the course's face_resnet, and what
            ``--detect`` feeds a 64-px model at inference), 112 (the ArcFace template:
            ArcFace-style models) or 150 (dlib's chip: fine-tuning ``dlib_resnet_v1``).
        grayscale: save one-channel PNGs (training reads them as grey RGB); for sets whose
            other images are grey, so colour does not tell people apart.
        faces: detector, upsampling, minimum face size, and what a photo with several
            faces gives: ``skip`` (default: left out and reported, since the other face
            may be someone else) or ``largest``. ``detect`` is ignored: prepare always
            detects, and takes one face per photo.
    """

    size: int = 64
    grayscale: bool = False
    faces: FaceOptions = field(default_factory=lambda: FaceOptions(detect=True))

    def __post_init__(self) -> None:
        if self.size not in SIZES:
            choices = "; ".join(f"{s} ({name}: {use})" for s, (name, use) in SIZES.items())
            raise ConfigError(f"crop size {self.size!r} is not offered; choose {choices}")
        object.__setattr__(self, "faces", self.faces.for_job("prepare"))
        if self.faces.policy not in (SeveralFaces.SKIP, SeveralFaces.LARGEST):
            raise ConfigError(
                f"--faces {self.faces.policy}: a training photo gives one face; "
                "choose skip (default) or largest"
            )

    def template(self) -> Template | str:
        from faceverify.faces.align import dlib_template

        name = SIZES[self.size][0]
        return dlib_template(self.size) if name.startswith("dlib") else name

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["template"] = SIZES[self.size][0]
        del data["faces"]["detect"]
        data["faces"]["several"] = str(self.faces.policy)
        return data


@dataclass
class PrepareReport:
    """What a run produced; ``to_dict()`` is what ``--json`` prints.

    Attributes:
        root: the output folder (``data.root`` for training).
        manifest: ``prepare.json``: options and every photo's outcome.
        counts: photos per outcome (see :data:`STATUSES`).
        people: people per role: ``train``, ``held_out``, ``too_few_photos``.
        pairs: ``genuine`` and ``impostor`` verification pairs.
        reused: photos whose aligned face (or reason) came from an earlier run.
        train_overrides: ``faceverify train`` arguments that read this folder.
    """

    root: Path
    manifest: Path
    counts: dict[str, int]
    people: dict[str, int]
    pairs: dict[str, int]
    reused: int
    train_overrides: list[str]

    @property
    def skipped(self) -> int:
        return sum(n for status, n in self.counts.items() if status in _SKIPPED)

    def summary(self) -> str:
        used = sum(self.counts.get(s, 0) for s in STATUSES[:3])
        skips = ", ".join(f"{n} {_SKIPPED[s]}" for s, n in self.counts.items() if s in _SKIPPED and n)
        return (
            f"{used} of {sum(self.counts.values())} photos used: {self.people['train']} people for training "
            f"({self.counts.get('train', 0)} train, {self.counts.get('val', 0)} val images), "
            f"{self.people['held_out']} held out ({self.pairs['genuine']} same / {self.pairs['impostor']} "
            f"different pairs)" + (f"; skipped {skips}" if skips else "") + f"; report: {self.manifest}"
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(root=str(self.root), manifest=str(self.manifest), skipped=self.skipped)
        return data


def prepare_photos(
    photos_dir: str | Path,
    out_dir: str | Path,
    *,
    crop: CropOptions | None = None,
    split: SplitOptions | None = None,
    force: bool = False,
    workers: int = 1,
    progress: bool | None = None,
) -> PrepareReport:
    """Detect, align and crop ``photos_dir/<person>/*`` into a training set in ``out_dir``.

    Args:
        photos_dir: one folder per person (sub-folders of a person are theirs too);
            photos directly in ``photos_dir`` belong to nobody and are reported.
        out_dir: created if missing. A folder made by an earlier run is updated in place
            (unchanged photos are not detected again); any other non-empty folder is
            refused unless ``force``, which then replaces only the outputs named in
            :data:`OUTPUTS`, ``faces/`` and ``prepare.json``.
        crop: crop size, grayscale, which face of a group photo, detector settings.
        split: validation share, held-out people, pairs, minimum photos, seed.
        force: use a non-empty folder that prepare did not make, or one made from
            another photo folder.
        workers: processes detecting at once; 1 (default) for small sets, the number of
            CPU cores for large ones (each process loads its own detector).
        progress: show a progress bar on stderr; None shows it on a terminal.

    Raises:
        ConfigError: a folder cannot be used, or too few people have usable photos
            (the manifest is still written, with every photo's outcome).
    """
    crop, split = crop or CropOptions(), split or SplitOptions()
    if workers < 1:
        raise ConfigError(f"workers {workers!r} must be at least 1")
    photos, out = Path(photos_dir), Path(out_dir)
    sources = _scan(photos, out)
    previous = _previous(out, photos, crop, force)
    out.mkdir(parents=True, exist_ok=True)
    run = _Run(photos, out, crop, split, sources, previous)
    reused = run.crop_all(workers, progress)
    try:
        plan = split_people(run.faces_by_person(), split)
    except ConfigError:
        run.clear_outputs()  # the old split may name faces this run replaced: no stale set
        run.save(complete=False)
        raise
    run.arrange(plan)
    run.save(complete=True)
    return run.report(plan, reused)


def prepared_template(root: str | Path) -> str | None:
    """The face template a ``prepare`` output folder's crops were aligned to (``dlib64``,
    ``arcface112``, ``dlib150``), or None when ``root`` was not made by ``prepare``."""
    manifest = Path(root) / MANIFEST
    if not manifest.is_file():
        return None
    try:
        template = json.loads(manifest.read_text(encoding="utf-8"))["options"]["crop"]["template"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return template if isinstance(template, str) else None


@dataclass(frozen=True)
class _Source:
    path: Path
    relative: str  # posix, relative to the photos folder: the manifest's key
    person: str | None  # the output name of its person (None: not in a person folder)
    name: str  # the output file name of its face


def _scan(photos: Path, out: Path) -> list[_Source]:
    from faceverify.decode import iter_image_paths

    if not photos.is_dir():
        raise ConfigError(f"photos folder '{photos}' not found; give a folder with one sub-folder per person")
    if out.resolve().is_relative_to(photos.resolve()):
        raise ConfigError(f"output folder '{out}' is inside the photos folder '{photos}'; put it elsewhere")
    people: dict[str, Path] = {}
    sources = []
    for path in iter_image_paths([photos]):
        parts = path.relative_to(photos).parts
        folder = parts[0] if len(parts) > 1 else None
        person = _safe(folder) if folder is not None else None
        if person is not None and people.setdefault(person, photos / parts[0]) != photos / parts[0]:
            raise ConfigError(
                f"person folders '{people[person].name}' and '{parts[0]}' both become '{person}' "
                "(spaces are not allowed in the pairs file): rename one"
            )
        sources.append(_Source(path, Path(*parts).as_posix(), person, ""))
    if not people:
        raise ConfigError(f"'{photos}' has no person folders with photos (expected <photos>/<person>/*.jpg)")
    return _named(sources)


def _face_path(source: _Source) -> str:
    """Where a photo's aligned face is cached, relative to the output folder."""
    return f"{FACES}/{source.person}/{source.name}"


def _safe(name: str) -> str:
    """A name without spaces: pairs files separate their fields by whitespace."""
    return re.sub(r"\s+", "_", name.strip())


def _named(sources: list[_Source]) -> list[_Source]:
    """Output names from the source names: ``sub/img 1.jpg`` -> ``sub__img_1.png``.

    Where two photos of a person differ only by suffix (``a.jpg``, ``a.png``), both keep
    it: ``a_jpg.png``, ``a_png.png``.
    """

    def stem(source: _Source, keep_suffix: bool) -> str:
        inner = Path(*Path(source.relative).parts[1:])
        base = inner.with_name(inner.name.replace(".", "_")) if keep_suffix else inner.with_suffix("")
        return _safe("__".join(base.parts)) + ".png"

    plain = {s.relative: stem(s, False) for s in sources if s.person is not None}
    uses = Counter((s.person, plain[s.relative]) for s in sources if s.person is not None)
    return [
        replace(s, name=stem(s, uses[(s.person, plain[s.relative])] > 1)) if s.person is not None else s
        for s in sources
    ]


def _previous(out: Path, photos: Path, crop: CropOptions, force: bool) -> dict[str, dict[str, Any]]:
    """The reusable records of an earlier run into ``out`` (empty when none apply)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output '{out}' is a file, not a folder; give a folder for the training set")
    if not out.exists() or not any(out.iterdir()):
        return {}
    manifest = out / MANIFEST
    if not manifest.is_file():
        if force:
            return {}
        raise ConfigError(
            f"output folder '{out}' is not empty and was not made by faceverify prepare "
            "(no prepare.json): choose an empty folder, or --force to write into it"
        )
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
        made_from, options, records = data["photos_dir"], data["options"]["crop"], data["photos"]
    except (ValueError, KeyError, TypeError):
        if force:
            return {}
        raise ConfigError(f"'{manifest}' is unreadable; delete it or use --force to start over") from None
    if made_from != str(photos.resolve()):
        if not force:
            raise ConfigError(
                f"'{out}' was prepared from '{made_from}', not '{photos.resolve()}': "
                "choose another output folder, or --force to start over"
            )
        return {}
    if options != crop.to_dict():
        log.info("crop options changed since the last run: every photo is cropped again")
        return {}
    return {r["source"]: r for r in records if isinstance(r, dict) and "source" in r}


@dataclass(frozen=True)
class _Crop:
    status: str  # "kept" or a skip reason code
    reason: str | None = None
    faces_found: int = 0
    box: list[float] | None = None


def _crop_photo(path: Path, target: Path, options: CropOptions) -> _Crop:
    """Detect, align and save one photo's face to ``target``; unusable photos say why."""
    import numpy as np
    from PIL import Image

    from faceverify.decode import load_image
    from faceverify.faces import align_faces
    from faceverify.photos import choose_faces, find_faces

    try:
        pixels = np.asarray(load_image(path))
        faces = find_faces(pixels, options.faces)
        choose_faces(faces, options.faces.policy, str(path))
    except ImageError as exc:  # unreadable, no face, or several (skipped by default)
        return _Crop(exc.kind.value, exc.reason, len(getattr(exc, "boxes", ())))
    chip = Image.fromarray(align_faces(pixels, faces[:1], options.template())[0])
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as partial:  # an interrupted run leaves no half-written face
        (chip.convert("L") if options.grayscale else chip).save(partial, format="PNG")
    return _Crop("kept", None, len(faces), [round(float(v), 1) for v in faces[0].box])


def _crop_job(job: tuple[Path, Path, CropOptions]) -> _Crop:
    return _crop_photo(*job)


class _Run:
    """One run: the records of every photo, the face cache, and the split folders."""

    def __init__(
        self,
        photos: Path,
        out: Path,
        crop: CropOptions,
        split: SplitOptions,
        sources: list[_Source],
        previous: dict[str, dict[str, Any]],
    ) -> None:
        self.photos, self.out, self.crop, self.split = photos, out, crop, split
        self.sources, self.previous = sources, previous
        self.records: dict[str, dict[str, Any]] = {}

    def crop_all(self, workers: int, progress: bool | None) -> int:
        """Fill ``records``, reusing what an earlier run found; returns how many were reused."""
        from tqdm.auto import tqdm

        todo: list[tuple[_Source, dict[str, Any]]] = []
        for source in self.sources:
            record = self._base(source)
            if source.person is None:
                self.records[source.relative] = {
                    **record,
                    "status": "no_person",
                    "reason": "not in a person folder",
                }
            elif (old := self._reusable(source, record)) is not None:
                self.records[source.relative] = old
            else:
                todo.append((source, record))
        show = progress if progress is not None else sys.stderr.isatty()
        bar = tqdm(total=len(todo), unit="photo", desc="preparing", disable=not show, file=sys.stderr)
        try:
            saved = time.monotonic()
            for (source, record), done in zip(todo, self._crops(todo, workers)):
                self.records[source.relative] = _with_crop(record, done, _face_path(source))
                bar.update()
                if time.monotonic() - saved > _SAVE_EVERY_S:
                    self.save(complete=False)
                    saved = time.monotonic()
        except BaseException:
            self.save(complete=False)  # interrupted or failed: a rerun resumes from here
            raise
        finally:
            bar.close()
        self._drop_stale_faces()
        return len(self.sources) - len(todo)

    def faces_by_person(self) -> dict[str, list[str]]:
        faces: dict[str, list[str]] = {}
        for record in self.records.values():
            if record.get("face"):
                faces.setdefault(record["person"], []).append(Path(record["face"]).name)
        return faces

    def _crops(self, todo: list[tuple[_Source, dict[str, Any]]], workers: int) -> Iterator[_Crop]:
        jobs = [(s.path, self.out / _face_path(s), self.crop) for s, _ in todo]
        if workers == 1 or len(jobs) < 2:
            yield from map(_crop_job, jobs)
            return
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers) as pool:
            yield from pool.map(_crop_job, jobs, chunksize=4)

    def _base(self, source: _Source) -> dict[str, Any]:
        info = source.path.stat()
        return {"source": source.relative, "person": source.person, "stat": [info.st_size, info.st_mtime_ns]}

    def _reusable(self, source: _Source, record: dict[str, Any]) -> dict[str, Any] | None:
        old = self.previous.get(source.relative)
        if old is None or old.get("stat") != record["stat"] or old.get("person") != source.person:
            return None
        face = old.get("face")
        if face:  # named as this run would name it (a new photo can change a name), and still there
            return old if face == _face_path(source) and (self.out / face).is_file() else None
        return old if old.get("status") in ("no_face", "several_faces", "unreadable") else None

    def _drop_stale_faces(self) -> None:
        """Remove faces of photos that are gone, so they do not linger in the cache."""
        folder = self.out / FACES
        if not folder.is_dir():
            return
        wanted = {self.out / r["face"] for r in self.records.values() if r.get("face")}
        for path in sorted(folder.rglob("*"), reverse=True):  # files before their folders
            if path.is_file() and path not in wanted:
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()

    def arrange(self, plan: Split) -> None:
        """Replace the split folders and pairs files by links to the cached faces."""
        self.clear_outputs()
        by_face = {(r["person"], Path(r["face"]).name): r for r in self.records.values() if r.get("face")}
        for folder, status, people in (
            (TRAIN, "train", plan.train),
            (VAL, "val", plan.val),
            (VERIFICATION, "verification", plan.held_out),
        ):
            for person, names in people.items():
                for name in names:
                    record = by_face[(person, name)]
                    output = f"{folder}/{person}/{name}"
                    _link(self.out / record["face"], self.out / output)
                    record.update(status=status, output=output, reason=None)
        for person, names in plan.too_few.items():
            reason = f"{person} has {len(names)} usable photos, fewer than min_photos {self.split.min_photos}"
            for name in names:
                by_face[(person, name)].update(status="too_few_photos", output=None, reason=reason)
        if plan.pairs:
            lines = [f"{VERIFICATION}/{pa}/{a} {VERIFICATION}/{pb}/{b}" for pa, a, pb, b, _ in plan.pairs]
            labels = [str(label) for *_, label in plan.pairs]
            atomic_write_text(self.out / PAIRS_VAL, "".join(f"{x} {y}\n" for x, y in zip(lines, labels)))
            atomic_write_text(self.out / PAIRS_TEST, "".join(f"{x}\n" for x in lines))

    def clear_outputs(self) -> None:
        for name in OUTPUTS:
            target = self.out / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()

    def save(self, *, complete: bool) -> None:
        ordered = [self.records[s.relative] for s in self.sources if s.relative in self.records]
        data = {
            "faceverify_version": __version__,
            "created": timestamp(),
            "complete": complete,
            "photos_dir": str(self.photos.resolve()),
            "options": {"crop": self.crop.to_dict(), "split": asdict(self.split)},
        }
        # one line per photo: a manifest of thousands of photos stays greppable
        head = json.dumps(data, indent=1, ensure_ascii=False)[: -len("\n}")]
        rows = ",\n".join(f"  {json.dumps(r, ensure_ascii=False)}" for r in ordered)
        atomic_write_text(self.out / MANIFEST, f'{head},\n "photos": [\n{rows}\n ]\n}}\n')

    def report(self, plan: Split, reused: int) -> PrepareReport:
        counts = {status: 0 for status in STATUSES}
        for record in self.records.values():
            counts[record["status"]] += 1
        genuine = sum(1 for *_, label in plan.pairs if label == 1)
        overrides = [f"data.root={self.out}"]
        if not plan.val:
            overrides.append("data.val_dir=null")
        if not plan.pairs:
            overrides.append("data.pairs=null")
        return PrepareReport(
            root=self.out,
            manifest=self.out / MANIFEST,
            counts=counts,
            people={
                "train": len(plan.train),
                "held_out": len(plan.held_out),
                "too_few_photos": len(plan.too_few),
            },
            pairs={"genuine": genuine, "impostor": len(plan.pairs) - genuine},
            reused=reused,
            train_overrides=overrides,
        )


def _with_crop(record: dict[str, Any], done: _Crop, face: str) -> dict[str, Any]:
    if done.status != "kept":
        return {**record, "status": done.status, "reason": done.reason, "faces_found": done.faces_found}
    # "cropped" until the split says where the face goes
    return {**record, "status": "cropped", "face": face, "faces_found": done.faces_found, "box": done.box}


def _link(source: Path, target: Path) -> None:
    """A hard link (no extra space); a copy where the file system has none."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
