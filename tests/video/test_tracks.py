"""A track's identity with hysteresis, its best shots, its box between detections, and the
pace that decides when to detect."""

from __future__ import annotations

import numpy as np
import pytest

from faceverify.video.tracks import Answer, Status, Track, decide

pytest.importorskip("trackers")

T = 0.9  # threshold; with margin 0.1 the band is 0.01
KNOWN_A = Answer(Status.KNOWN, "a", 0.95)


@pytest.mark.parametrize(
    ("current", "matches", "expected"),
    [
        (Answer(Status.UNIDENTIFIED), [("a", 0.95)], ("known", "a")),
        (Answer(Status.UNIDENTIFIED), [("a", 0.85)], ("unknown", None)),
        (Answer(Status.UNKNOWN), [("a", 0.9)], ("known", "a")),  # at the threshold: taken
        (Answer(Status.UNKNOWN), [("a", 0.95), ("b", 0.945)], ("unknown", None)),  # not distinct
        (Answer(Status.UNKNOWN), [("a", 0.95), ("b", 0.94)], ("known", "a")),  # leads by the band
        (KNOWN_A, [("a", 0.895)], ("known", "a")),  # just below: kept (within the band)
        (KNOWN_A, [("a", 0.885)], ("unknown", None)),  # below the band: dropped
        (KNOWN_A, [("b", 0.955), ("a", 0.95)], ("known", "a")),  # b barely ahead: kept
        (KNOWN_A, [("b", 0.97), ("a", 0.95)], ("known", "b")),  # b clearly ahead: switch
        (KNOWN_A, [("b", 0.905), ("a", 0.80)], ("known", "b")),  # a gone far below
        (KNOWN_A, [("b", 0.85), ("c", 0.80)], ("unknown", None)),
        (KNOWN_A, [], ("unknown", None)),  # the gallery was emptied
    ],
)
def test_identity_changes_only_past_the_hysteresis_band(
    current: Answer, matches: list[tuple[str, float]], expected: tuple[str, str | None]
) -> None:
    answer = decide(current, matches, T, 0.1)
    assert (answer.status.value, answer.name) == expected


def test_without_a_margin_the_threshold_alone_decides() -> None:
    assert decide(KNOWN_A, [("a", 0.899)], T, 0.0).status is Status.UNKNOWN
    assert decide(KNOWN_A, [("b", 0.951), ("a", 0.95)], T, 0.0).name == "b"


def _face(box: tuple[float, float, float, float]) -> object:
    from faceverify.faces.detect import Face

    return Face(box=box, score=1.0, landmarks=np.zeros((5, 2)), landmark_scheme="dlib5", detector="hog")


def test_between_detections_a_box_moves_on_at_its_last_speed() -> None:
    pixels = np.zeros((100, 200, 3), np.uint8)
    track = Track(1, 0.0, 0.0, 0, 0)
    track.seen(0.0, 0, _face((10, 10, 30, 30)), 1.0, pixels)  # type: ignore[arg-type]
    assert track.box_at(0.5, horizon=1.0) == (10, 10, 30, 30)  # one detection: no speed yet
    track.seen(1.0, 10, _face((20, 10, 40, 30)), 1.0, pixels)  # type: ignore[arg-type]
    assert track.box_at(1.5, horizon=1.0) == pytest.approx((25, 10, 45, 30))
    assert track.box_at(9.0, horizon=1.0) == pytest.approx((30, 10, 50, 30)), "stops after the horizon"


def test_a_track_keeps_its_best_shots_and_weights_its_probe_by_quality() -> None:
    from faceverify.faces.quality import FaceQuality
    from faceverify.video.tracks import Shot

    track = Track(1, 0.0, 0.0, 0, 0, keep=2)
    a, b = np.array([1.0, 0.0], np.float32), np.array([0.0, 1.0], np.float32)

    def shot(score: float, vector: np.ndarray) -> Shot:
        return Shot(0.0, 0, _face((0, 0, 9, 9)), FaceQuality(score, 50, 100, 1, 0), vector)  # type: ignore[arg-type]

    assert track.wants(0.8, 0.75) and not track.wants(0.7, 0.75)
    track.add(shot(0.8, a))
    track.add(shot(1.0, b))
    assert not track.wants(0.79, 0.75), "full, and no better than the worst kept"
    assert track.wants(0.9, 0.75)
    track.add(shot(0.9, a))
    assert [s.quality.score for s in track.shots] == [1.0, 0.9]
    probe = track.probe()
    assert probe[1] > probe[0] > 0 and np.linalg.norm(probe) == pytest.approx(1.0)


def test_the_pace_detects_as_often_as_the_frame_budget_allows() -> None:
    from faceverify.video.watch import Pace, WatchOptions

    pace = Pace(10.0, WatchOptions(), live=True)  # 0.09 s a frame
    assert pace.every == 1  # nothing measured yet
    pace.record(0.25, detected=True)
    for _ in range(50):
        pace.record(0.01, detected=False)
    # n detections every n frames: 0.25 + (n-1) 0.01 <= 0.09 n  ->  n >= 3
    assert pace.every == 3
    assert not pace.skip_now(), "live sources never skip: their reader drops"
    slow = Pace(10.0, WatchOptions(), live=True)
    slow.record(3.0, detected=True)
    assert slow.every == 5, "never further apart than half of lost_after (1 s at 10 fps)"
    assert slow.detect_now(10.0) and not slow.detect_now(10.1)
    slow.record(0.01, detected=True)
    # a live source dropped frames meanwhile: half a second of video is due whatever the count
    assert slow.detect_now(10.6)
    fixed = Pace(10.0, WatchOptions(detect_every=5), live=True)
    fixed.record(0.5, detected=True)
    assert fixed.every == 5


def test_a_file_behind_its_pace_skips_frames_and_catches_up() -> None:
    from faceverify.video.watch import Pace, WatchOptions

    pace = Pace(10.0, WatchOptions(speed=1.0), live=False)
    pace.record(1.0, detected=True)  # a second behind a 0.09 s budget
    assert pace.skip_now()
    while pace.skip_now():
        pace.skipped()
    assert pace.lag <= 4 * pace.budget
    assert not Pace(10.0, WatchOptions(speed=0), live=False).skip_now()
