"""Reading verification pairs files: the course format, LFW ``pairs.txt`` and CSV.

Every problem is reported with its line number and the rest of the file is still
used: a malformed line, a pair naming a missing image, or a duplicate never sinks the
whole evaluation. Only contradictions (the same pair labelled both ways) are errors.
A CSV's other columns (age group, mask...) are kept with each pair as its ``tags``, so an
evaluation can report its figures per group.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from faceverify.checks import check_choice
from faceverify.errors import PairsError

FORMATS = ("auto", "course", "lfw", "csv")
_CSV_A = ("a", "path_a", "image_a", "img_a", "image1", "img1", "left", "path1")
_CSV_B = ("b", "path_b", "image_b", "img_b", "image2", "img2", "right", "path2")
_CSV_LABEL = ("label", "same", "is_same", "target", "match")


@dataclass(frozen=True)
class Pair:
    """Two images and, when known, whether they show the same person (1) or not (0).

    ``tags`` holds the pair's other CSV columns by name (empty for the other formats); it
    takes no part in comparing pairs, which are the same pair whatever their tags.
    """

    a: Path
    b: Path
    label: int | None
    line: int
    tags: Mapping[str, str] = field(default_factory=dict, compare=False)


@dataclass
class PairSet:
    """The usable pairs of a file, and what was wrong with the others.

    ``columns``: a CSV's columns other than the two images and the label, in file order:
    the names a pair's ``tags`` and an evaluation's groups (``--by``) may use.
    """

    source: str
    format: str
    pairs: list[Pair] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    duplicates: int = 0
    _by_images: dict[frozenset[Path], Pair] = field(default_factory=dict, repr=False)

    @property
    def labelled(self) -> bool:
        return bool(self.pairs) and all(p.label is not None for p in self.pairs)

    def images(self) -> list[Path]:
        """Each distinct image once, in first-seen order, so each is embedded once."""
        return list(dict.fromkeys(path for pair in self.pairs for path in (pair.a, pair.b)))


def read_pairs(
    path: str | Path,
    root: str | Path,
    *,
    format: str = "auto",
    columns: tuple[str | None, str | None, str | None] = (None, None, None),
) -> PairSet:
    """Read a pairs file; image paths are resolved against ``root``.

    Args:
        path: the pairs file.
        root: the folder the image paths are relative to (LFW: the folder of people).
        format: ``course`` (``path_a path_b [label]`` per line), ``lfw`` (its count
            header, then ``name i j`` or ``name1 i name2 j``), ``csv`` (a header row), or
            ``auto`` to pick by suffix and content.
        columns: for CSV, the names of the image-a, image-b and label columns; None
            looks for common names (``a``/``b``/``label``, ``image1``/``image2``...).
    """
    file, folder = Path(path), Path(root)
    if not file.is_file():
        raise PairsError(f"pairs file '{file}' not found")
    if not folder.is_dir():
        raise PairsError(f"image root '{folder}' is not a folder")
    check_choice("pairs format", format, FORMATS)
    text = file.read_text(encoding="utf-8-sig")
    chosen = _detect(file, text) if format == "auto" else format
    result = PairSet(source=str(file), format=chosen)
    rows = {"course": _course_rows, "lfw": _lfw_rows, "csv": _csv_rows}[chosen]
    for line, a, b, label, tags in rows(text, result, columns):
        _add(result, folder, Pair(folder / a, folder / b, label, line, tags))
    if not result.pairs:
        detail = f": {result.problems[0]}" if result.problems else ""
        raise PairsError(f"no usable pairs in '{file}' ({chosen} format){detail}")
    return result


def _detect(file: Path, text: str) -> str:
    if file.suffix.lower() == ".csv":
        return "csv"
    first = next((line.split() for line in text.splitlines() if line.strip()), [])
    return "lfw" if first and len(first) <= 2 and all(f.isdigit() for f in first) else "course"


Row = tuple[int, str, str, "int | None", dict[str, str]]


def _course_rows(text: str, result: PairSet, _: object) -> Iterator[Row]:
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) not in (2, 3):
            result.problems.append(
                f"line {number}: expected 'path_a path_b [label]', got {len(fields)} fields"
            )
            continue
        label = _label(fields[2], number, result) if len(fields) == 3 else None
        if len(fields) == 3 and label is None:
            continue
        yield (number, fields[0], fields[1], label, {})


def _lfw_rows(text: str, result: PairSet, _: object) -> Iterator[Row]:
    lines = text.splitlines()
    for number, line in enumerate(lines[1:], start=2):  # line 1: "folds pairs-per-fold"
        fields = line.split()
        if not fields:
            continue
        try:
            if len(fields) == 3:
                name, i, j = fields[0], int(fields[1]), int(fields[2])
                yield (number, _lfw_path(name, i), _lfw_path(name, j), 1, {})
            elif len(fields) == 4:
                first, second = _lfw_path(fields[0], int(fields[1])), _lfw_path(fields[2], int(fields[3]))
                yield (number, first, second, 0, {})
            else:
                raise ValueError(f"{len(fields)} fields")
        except ValueError:
            result.problems.append(
                f"line {number}: expected 'name i j' or 'name1 i name2 j', got {line.strip()!r}"
            )


def _lfw_path(name: str, index: int) -> str:
    return f"{name}/{name}_{index:04d}.jpg"


def _csv_rows(
    text: str, result: PairSet, columns: tuple[str | None, str | None, str | None]
) -> Iterator[Row]:
    reader = csv.DictReader(io.StringIO(text))
    header = list(reader.fieldnames or [])
    col_a = _column(header, columns[0], _CSV_A, "image-a", required=True)
    col_b = _column(header, columns[1], _CSV_B, "image-b", required=True)
    col_label = _column(header, columns[2], _CSV_LABEL, "label", required=columns[2] is not None)
    result.columns = [name for name in header if name not in (col_a, col_b, col_label)]
    for number, record in enumerate(reader, start=2):
        a, b = (record.get(col_a) or "").strip(), (record.get(col_b) or "").strip()
        if not a or not b:
            result.problems.append(f"line {number}: empty image column")
            continue
        label = _label((record.get(col_label) or "").strip(), number, result) if col_label else None
        if col_label and label is None:
            continue
        tags = {name: (record.get(name) or "").strip() for name in result.columns}
        yield (number, a, b, label, tags)


def _column(
    header: list[str], chosen: str | None, usual: tuple[str, ...], what: str, *, required: bool
) -> str | None:
    if chosen is not None:
        if chosen not in header:
            raise PairsError(f"CSV has no {what} column {chosen!r}; its columns: {', '.join(header)}")
        return chosen
    lowered = {name.lower().strip(): name for name in header}
    found = next((lowered[n] for n in usual if n in lowered), None)
    if found is None and required:
        raise PairsError(
            f"CSV has no {what} column among {', '.join(header)}; name it with --col-a/--col-b/--col-label"
        )
    return found


#: How pairs files in the wild say "same person" and "different people".
LABELS = {
    **dict.fromkeys(("1", "true", "yes", "y", "same", "match", "genuine", "positive"), 1),
    **dict.fromkeys(("0", "false", "no", "n", "different", "diff", "mismatch", "impostor", "negative"), 0),
}


def _label(text: str, number: int, result: PairSet) -> int | None:
    value = LABELS.get(text.lower())
    if value is None:
        result.problems.append(
            f"line {number}: label {text!r} is not one of 1/0, true/false, yes/no, same/different"
        )
    return value


def _add(result: PairSet, root: Path, pair: Pair) -> None:
    missing = [p for p in (pair.a, pair.b) if not p.is_file()]
    if missing:
        names = " and ".join(str(p.relative_to(root)) for p in missing)
        result.problems.append(f"line {pair.line}: image {names} not found under {root}")
        return
    key = frozenset((pair.a, pair.b))
    first = result._by_images.get(key)
    if first is not None:
        if first.label != pair.label:
            raise PairsError(
                f"{result.source}: line {pair.line} labels the pair of line {first.line} "
                f"as {pair.label}, not {first.label}; fix one of them"
            )
        result.duplicates += 1
        result.problems.append(f"line {pair.line}: duplicate of line {first.line}, counted once")
        return
    result._by_images[key] = pair
    result.pairs.append(pair)
