"""Splitting people for training: deterministic, stable, and every rule a trainer relies on."""

from __future__ import annotations

import pytest

from faceverify.data.split import SplitOptions, split_people
from faceverify.errors import ConfigError


def _people(count: int, faces: int = 5) -> dict[str, list[str]]:
    return {f"p{i:02d}": [f"{k}.png" for k in range(faces)] for i in range(count)}


def test_same_seed_same_split_and_another_seed_another() -> None:
    people = _people(20)
    first, again = split_people(people, SplitOptions(seed=3)), split_people(people, SplitOptions(seed=3))
    assert (first.train, first.val, first.held_out, first.pairs) == (
        again.train,
        again.val,
        again.held_out,
        again.pairs,
    )
    other = split_people(people, SplitOptions(seed=4))
    assert other.held_out != first.held_out


def test_adding_a_person_keeps_the_others_where_they_were() -> None:
    """A keyed hash, not a shuffle: a new person does not re-deal the whole set."""
    people = _people(30)
    before = split_people(people, SplitOptions(pairs_people=6))
    after = split_people({**people, "zz_new": ["a.png", "b.png"]}, SplitOptions(pairs_people=6))
    assert len(set(before.held_out) & set(after.held_out)) >= 5
    assert all(after.val.get(p) == v for p, v in before.val.items() if p in after.val)


def test_every_training_person_has_train_and_val_images_and_held_out_ones_never_train() -> None:
    people = {**_people(8, faces=2), **{f"q{i}": [f"{k}.png" for k in range(10)] for i in range(4)}}
    split = split_people(people, SplitOptions(val_share=0.2))
    assert set(split.val) == set(split.train)  # val identities must be training identities
    for person, names in split.train.items():
        assert names and not set(names) & set(split.val[person])
        assert sorted(names + split.val[person]) == sorted(people[person])
    assert all(len(split.val[p]) == 2 for p in split.train if p.startswith("q"))  # 20% of 10
    assert not set(split.held_out) & set(split.train)
    assert len(split.held_out) == round(12 * 0.2)


def test_no_validation_set_with_val_share_zero_and_too_few_people_left_out() -> None:
    people = {**_people(5, faces=3), "solo": ["only.png"]}
    split = split_people(people, SplitOptions(val_share=0.0, min_photos=2, pairs_share=0.0))
    assert split.val == {} and split.held_out == {} and split.pairs == []
    assert split.too_few == {"solo": ["only.png"]}
    assert len(split.train) == 5


def test_pairs_are_labelled_by_person_unique_and_balanced() -> None:
    split = split_people(_people(20, faces=4), SplitOptions(pairs_people=5, impostor_ratio=2.0))
    genuine = [p for p in split.pairs if p[4] == 1]
    impostors = [p for p in split.pairs if p[4] == 0]
    assert all(pa == pb for pa, _, pb, _, _ in genuine)
    assert all(pa != pb for pa, _, pb, _, _ in impostors)
    assert len(genuine) == 5 * 6  # every pair of 4 photos, for 5 people
    assert len(impostors) == 2 * len(genuine)
    keys = {frozenset(((pa, a), (pb, b))) for pa, a, pb, b, _ in split.pairs}
    assert len(keys) == len(split.pairs)
    assert {pa for pa, *_ in split.pairs} <= set(split.held_out)


def test_one_persons_same_pairs_are_capped() -> None:
    split = split_people(_people(6, faces=30), SplitOptions(pairs_people=2, max_pairs_per_person=10))
    genuine = [p for p in split.pairs if p[4] == 1]
    assert len(genuine) == 20


@pytest.mark.parametrize(
    ("people", "options", "message"),
    [
        (_people(1), SplitOptions(), "only 1 people"),
        (_people(5, faces=1), SplitOptions(min_photos=2), "lower --min-photos"),
        (_people(5), SplitOptions(pairs_people=1), "impostor pairs need 2"),
        (_people(5), SplitOptions(pairs_people=4), "use 0 or 2 to 3"),
    ],
)
def test_impossible_splits_are_refused_with_the_way_out(
    people: dict[str, list[str]], options: SplitOptions, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        split_people(people, options)


def test_small_sets_hold_out_two_people_but_keep_two_for_training() -> None:
    assert len(split_people(_people(4), SplitOptions()).held_out) == 2
    assert split_people(_people(3), SplitOptions()).held_out == {}  # two for training, none spare
    with pytest.raises(ConfigError, match="val_share"):
        SplitOptions(val_share=1.0)
