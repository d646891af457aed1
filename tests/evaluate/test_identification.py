"""Identification on generated people: ranks, CMC, and open-set rates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from faceverify.errors import FaceVerifyError
from faceverify.evaluate.identification import identification_metrics
from faceverify.gallery.gallery import Gallery
from faceverify.gallery.sqlite import SQLiteStore


def test_closed_and_open_set_numbers(atto_model: Any, identity_data: Path) -> None:
    gallery, probes = identity_data / "gallery", identity_data / "probes"
    strict = identification_metrics(atto_model, gallery, probes, threshold=0.999)
    assert strict["gallery"] == {"people": 8, "images": 16, "folder": str(gallery)}
    assert strict["probes"]["known"] == 16
    assert strict["probes"]["unknown"] == 4
    assert strict["rank_accuracy"] == {"rank_1": 1.0, "rank_5": 1.0}
    cmc = strict["cmc"]
    assert len(cmc) == 8
    assert cmc == sorted(cmc)
    assert cmc[-1] == 1.0
    # nobody passes an almost-impossible threshold; everybody passes -1
    assert strict["open_set"]["unknown_accept_rate"] == 0.0
    assert strict["open_set"]["known_rejected_rate"] == 1.0
    lenient = identification_metrics(atto_model, gallery, probes, threshold=-1.0)["open_set"]
    assert lenient["unknown_accept_rate"] == 1.0
    assert lenient["known_identified_rate"] == 1.0


def test_small_galleries_and_bad_folders(atto_model: Any, identity_data: Path, tmp_path: Path) -> None:
    small = tmp_path / "gallery"
    for person in ("p0", "p1"):
        (small / person).mkdir(parents=True)
        (small / person / "0.png").write_bytes((identity_data / "gallery" / person / "0.png").read_bytes())
    result = identification_metrics(atto_model, small, identity_data / "probes", threshold=0.5)
    assert result["rank_accuracy"]["rank_5"] == {"unmeasured": "needs at least 5 gallery people, have 2"}
    assert result["rank_accuracy"]["rank_1"] == 1.0
    with pytest.raises(FaceVerifyError, match="holds no person folders with images"):
        identification_metrics(
            atto_model, tmp_path / "gallery" / "p0", identity_data / "probes", threshold=0.5
        )
    with pytest.raises(FaceVerifyError, match=r"probes folder .* not found"):
        identification_metrics(atto_model, small, tmp_path / "none", threshold=0.5)


@pytest.mark.parametrize("match", ["best", "centroid"])
def test_rank_one_is_what_the_gallery_identifies(
    atto_model: Any, identity_data: Path, tmp_path: Path, match: str
) -> None:
    gallery_dir, probes = identity_data / "gallery", identity_data / "probes"
    metrics = identification_metrics(atto_model, gallery_dir, probes, threshold=-1.0, match=match)
    assert metrics["matching"].startswith("best single" if match == "best" else "centroid")
    with SQLiteStore(tmp_path / "g") as store:
        gallery = Gallery(store, atto_model, match=match)
        for person in sorted(gallery_dir.iterdir()):
            gallery.enroll(person.name, sorted(person.glob("*.png")))
        known = [p for p in sorted(probes.glob("*/*.png")) if (gallery_dir / p.parent.name).is_dir()]
        hits = [gallery.identify(p, threshold=-1.0).name == p.parent.name for p in known]
    assert metrics["open_set"]["known_identified_rate"] == pytest.approx(sum(hits) / len(hits))
    assert metrics["rank_accuracy"]["rank_1"] == pytest.approx(sum(hits) / len(hits))
