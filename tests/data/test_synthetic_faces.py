"""The synthetic dataset: course layout, reproducible, valid pairs files."""

from __future__ import annotations

import hashlib
from pathlib import Path

from PIL import Image

from faceverify.data.synthetic_faces import generate


def _digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(root).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


def test_layout_counts_and_reproducibility(tmp_path: Path) -> None:
    root = generate(
        tmp_path / "a", identities=3, images_per_identity=4, held_out=3, images_per_held_out=3, size=48
    )
    people = sorted(p.name for p in (root / "classification_train").iterdir())
    assert people == ["id00000", "id00001", "id00002"]
    assert all(len(list((root / "classification_train" / p).iterdir())) == 4 for p in people)
    assert all(len(list((root / "classification_val" / p).iterdir())) == 2 for p in people)
    with Image.open(next((root / "verification_data").iterdir())) as image:
        assert (image.size, image.mode) == ((48, 48), "RGB")
    again = generate(
        tmp_path / "b", identities=3, images_per_identity=4, held_out=3, images_per_held_out=3, size=48
    )
    assert _digest(root) == _digest(again)


def test_pairs_files_are_consistent(tmp_path: Path) -> None:
    root = generate(tmp_path, identities=1, images_per_identity=1, held_out=5, images_per_held_out=3, size=32)
    labelled = [line.split() for line in (root / "verification_pairs_val.txt").read_text().splitlines()]
    unlabelled = [line.split() for line in (root / "verification_pairs_test.txt").read_text().splitlines()]
    assert [row[:2] for row in labelled] == unlabelled
    assert {row[2] for row in labelled} == {"0", "1"}
    assert len({frozenset(row[:2]) for row in labelled}) == len(labelled)  # no duplicates
    for a, b, label in labelled:
        assert (root / a).is_file() and (root / b).is_file()
        same_person = Path(a).name.split("_")[0] == Path(b).name.split("_")[0]
        assert same_person == (label == "1")
