"""``faceverify detect``: the faces of photos as data, aligned crops, and annotated pictures."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceverify.cli.common import EXIT_OK, EXIT_PARTIAL, build_from_args, face_options, log
from faceverify.errors import ConfigError, ImageError, NoFaceError

if TYPE_CHECKING:
    import numpy as np

    from faceverify.faces.detect import Face
    from faceverify.gallery.gallery import Gallery
    from faceverify.photos import FaceOptions


def detect(args: argparse.Namespace) -> int:
    """Every face of every photo: box, score and landmarks; crops and pictures on request."""
    from faceverify.decode import iter_image_paths, load_image
    from faceverify.faces.draw import draw_faces
    from faceverify.photos import find_faces

    photos = list(iter_image_paths(args.photos))
    if not photos:
        raise ConfigError(f"no images found in {', '.join(args.photos)}")
    annotate = _annotation_target(args.annotate, len(photos))
    if args.whole_if_no_face:
        raise ConfigError(
            "--whole-if-no-face applies to commands that embed photos; detect reports faces only"
        )
    options = face_options(args, "detect")
    gallery = _gallery(args, options) if args.db else None
    failed = 0
    rows: list[dict[str, Any]] = []
    for photo in photos:
        try:
            pixels = _rgb(load_image(photo))
        except ImageError as exc:
            log.warning("skipped %s", exc)
            failed += 1
            continue
        if gallery is not None:
            faces, names = _named_faces(gallery, pixels)
        else:
            faces = find_faces(pixels, options)
            names = [None] * len(faces)
        for index, (face, name) in enumerate(zip(faces, names)):
            rows.append(_row(photo, index, face, name, pixels if args.quality else None))
        if args.crops:
            _write_crops(Path(args.crops), photo, pixels, faces, args.template)
        if annotate is not None:
            target = annotate if annotate.suffix == ".png" else annotate / f"{photo.stem}.png"
            draw_faces(pixels, faces, names).save(target)
        if not faces:
            log.warning("%s: no face found", photo)
    _print(rows, args.json)
    return EXIT_PARTIAL if failed else EXIT_OK


def _rgb(image: Any) -> np.ndarray:
    import numpy as np

    return np.asarray(image)


def _annotation_target(value: str | None, photos: int) -> Path | None:
    if value is None:
        return None
    target = Path(value)
    if target.suffix == ".png" and photos > 1:
        raise ConfigError(f"--annotate {value}: {photos} photos need a folder, not one .png file")
    folder = target.parent if target.suffix == ".png" else target
    folder.mkdir(parents=True, exist_ok=True)
    return target


def _gallery(args: argparse.Namespace, options: FaceOptions) -> Gallery:
    from dataclasses import replace

    from faceverify.gallery.gallery import Gallery, open_store

    # this command is about faces: detect whatever the model, so every answer has its face
    return Gallery(open_store(args.db), build_from_args(args), faces=replace(options, detect=True))


def _named_faces(gallery: Gallery, pixels: np.ndarray) -> tuple[list[Face], list[str | None]]:
    """The faces of a photo with the gallery's answer for each, from one detection."""
    try:
        answers = gallery.identify_faces(pixels, top_k=1)
    except NoFaceError:
        return [], []
    faces = [a.face for a in answers if a.face is not None]
    labels: list[str | None] = [
        f"{a.name} {a.matches[0].score:.2f}" if a.name else "unknown" for a in answers
    ]
    return faces, labels


def _row(photo: Path, index: int, face: Face, name: str | None, pixels: np.ndarray | None) -> dict[str, Any]:
    """One face's output row; with the photo's ``pixels``, its quality too."""
    row = {"path": str(photo), "face": index, **face.to_dict()}
    if pixels is not None:
        from faceverify.faces.quality import face_quality

        row["quality"] = face_quality(pixels, face).to_dict()
    if name is not None:
        row["name"] = name
    return row


def _print(rows: list[dict[str, Any]], as_json: bool) -> None:
    for row in rows:
        if as_json:
            print(json.dumps(row))
        else:
            box = ",".join(f"{v:.0f}" for v in row["box"].values())
            quality = f"\t{row['quality']['score']:.2f}" if "quality" in row else ""
            name = row.get("name", "")
            print(f"{row['path']}\t{row['face']}\t{box}\t{row['score']:.2f}{quality}\t{name}".rstrip())


def _write_crops(folder: Path, photo: Path, pixels: np.ndarray, faces: list[Face], template: str) -> None:
    from PIL import Image

    from faceverify.faces import align_faces

    folder.mkdir(parents=True, exist_ok=True)
    for index, chip in enumerate(align_faces(pixels, faces, template) if faces else []):
        Image.fromarray(chip).save(folder / f"{photo.stem}_face{index}.png")


def register(sub: Any, common: argparse.ArgumentParser, model_opts: argparse.ArgumentParser) -> None:
    from faceverify.faces.align import TEMPLATES

    p = sub.add_parser(
        "detect",
        parents=[common, model_opts],
        help="find faces in photos: boxes and landmarks, aligned crops, annotated pictures",
    )
    p.add_argument("photos", nargs="+", metavar="PHOTO_OR_FOLDER")
    p.add_argument("--crops", metavar="DIR", help="write each face as an aligned crop into DIR")
    p.add_argument(
        "--template",
        default="dlib150",
        choices=tuple(TEMPLATES),
        help="alignment of the crops: dlib's 150x150 (default) or the 112x112 ArcFace one",
    )
    p.add_argument(
        "--annotate",
        metavar="OUT",
        help="draw boxes, landmarks (and names with --db) into OUT.png or folder OUT",
    )
    p.add_argument("--db", help="a gallery: label each face with its name or 'unknown'")
    p.add_argument(
        "--quality",
        action="store_true",
        help="score how usable each face is (size, sharpness, detector score, head turn): a "
        "'quality' object in --json, a column after the detector score otherwise",
    )
    p.set_defaults(handler=detect)
