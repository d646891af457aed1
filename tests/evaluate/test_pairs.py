"""Pairs files in three formats; every bad line reported by number, the rest kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from faceverify.errors import ConfigError, PairsError
from faceverify.evaluate.pairs import read_pairs


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for name in ["x/1.jpg", "x/2.jpg", "y/1.jpg", "Ann/Ann_0001.jpg", "Ann/Ann_0002.jpg", "Bob/Bob_0003.jpg"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    return tmp_path


def _write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.write_text(text)
    return path


def test_course_format_with_labels_problems_and_duplicates(root: Path) -> None:
    text = "\n".join(
        [
            "# comment",
            "x/1.jpg x/2.jpg 1",
            "x/1.jpg y/1.jpg 0",
            "x/1.jpg missing.jpg 0",
            "x/2.jpg x/1.jpg 1",  # the first pair, reversed
            "x/1.jpg",
            "x/2.jpg y/1.jpg maybe",
        ]
    )
    pairs = read_pairs(_write(root, "pairs.txt", text), root)
    assert pairs.format == "course"
    assert [(p.a.name, p.b.name, p.label, p.line) for p in pairs.pairs] == [
        ("1.jpg", "2.jpg", 1, 2),
        ("1.jpg", "1.jpg", 0, 3),
    ]
    assert pairs.labelled
    assert pairs.duplicates == 1
    assert pairs.problems == [
        f"line 4: image missing.jpg not found under {root}",
        "line 5: duplicate of line 2, counted once",
        "line 6: expected 'path_a path_b [label]', got 1 fields",
        "line 7: label 'maybe' is not one of 1/0, true/false, yes/no, same/different",
    ]
    assert [p.name for p in pairs.images()] == ["1.jpg", "2.jpg", "1.jpg"]


def test_unlabelled_course_pairs_and_contradictions(root: Path) -> None:
    pairs = read_pairs(_write(root, "test.txt", "x/1.jpg x/2.jpg\nx/1.jpg y/1.jpg\n"), root)
    assert [p.label for p in pairs.pairs] == [None, None]
    assert not pairs.labelled
    with pytest.raises(PairsError, match="line 2 labels the pair of line 1 as 0, not 1"):
        read_pairs(_write(root, "bad.txt", "x/1.jpg x/2.jpg 1\nx/2.jpg x/1.jpg 0\n"), root)


def test_lfw_pairs_format(root: Path) -> None:
    text = "1\t2\nAnn\t1\t2\nAnn\t1\tBob\t3\nAnn one two\n"
    pairs = read_pairs(_write(root, "pairs.txt", text), root)
    assert pairs.format == "lfw"
    assert [(str(p.a.relative_to(root)), str(p.b.relative_to(root)), p.label) for p in pairs.pairs] == [
        ("Ann/Ann_0001.jpg", "Ann/Ann_0002.jpg", 1),
        ("Ann/Ann_0001.jpg", "Bob/Bob_0003.jpg", 0),
    ]
    assert pairs.problems == ["line 4: expected 'name i j' or 'name1 i name2 j', got 'Ann one two'"]


def test_csv_with_usual_and_named_columns(root: Path) -> None:
    usual = read_pairs(
        _write(root, "p.csv", "image1,image2,same\nx/1.jpg,x/2.jpg,true\nx/1.jpg,y/1.jpg,0\n"), root
    )
    assert usual.format == "csv"
    assert [p.label for p in usual.pairs] == [1, 0]
    named = _write(root, "q.csv", "left_img,right_img,truth\nx/1.jpg,x/2.jpg,1\n,y/1.jpg,0\n")
    pairs = read_pairs(named, root, columns=("left_img", "right_img", "truth"))
    assert [p.label for p in pairs.pairs] == [1]
    assert pairs.problems == ["line 3: empty image column"]
    with pytest.raises(PairsError, match="no image-a column among left_img, right_img, truth"):
        read_pairs(named, root)
    with pytest.raises(PairsError, match="no label column 'y'; its columns: left_img, right_img, truth"):
        read_pairs(named, root, columns=("left_img", "right_img", "y"))


def test_csv_keeps_its_other_columns_as_tags(root: Path) -> None:
    text = "age,a,b,label,mask\nyoung,x/1.jpg,x/2.jpg,1, yes \nold,x/1.jpg,y/1.jpg,0\n"
    pairs = read_pairs(_write(root, "g.csv", text), root)
    assert pairs.columns == ["age", "mask"]
    assert [dict(p.tags) for p in pairs.pairs] == [
        {"age": "young", "mask": "yes"},
        {"age": "old", "mask": ""},
    ]
    course = read_pairs(_write(root, "c.txt", "x/1.jpg x/2.jpg 1\n"), root)
    assert course.columns == [] and dict(course.pairs[0].tags) == {}


@pytest.mark.parametrize(("same", "different"), [("Yes", "No"), ("TRUE", "false"), ("same", "different")])
def test_csv_labels_as_pairs_files_in_the_wild_write_them(root: Path, same: str, different: str) -> None:
    text = f"a,b,label\nx/1.jpg,x/2.jpg,{same}\nx/1.jpg,y/1.jpg,{different}\n"
    assert [p.label for p in read_pairs(_write(root, "w.csv", text), root).pairs] == [1, 0]


def test_files_that_cannot_be_used_at_all(root: Path) -> None:
    with pytest.raises(PairsError, match="not found"):
        read_pairs(root / "nope.txt", root)
    with pytest.raises(PairsError, match="is not a folder"):
        read_pairs(_write(root, "p.txt", "x/1.jpg x/2.jpg 1\n"), root / "nowhere")
    with pytest.raises(PairsError, match=r"no usable pairs .*line 1: image a.jpg and b.jpg not found"):
        read_pairs(_write(root, "none.txt", "a.jpg b.jpg 1\n"), root)
    with pytest.raises(ConfigError, match="valid: auto, course, lfw, csv"):
        read_pairs(root / "p.txt", root, format="tsv")
