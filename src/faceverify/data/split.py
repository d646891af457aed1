"""Deterministic splits of a folder-per-person set: training, validation and held-out people.

Who goes where is decided by a keyed hash of ``(seed, name)``, not by shuffling a list:
the same seed always gives the same split, and adding a photo or a person moves few of
the others (a shuffle would reshuffle everything). Verification pairs are drawn with a
generator seeded the same way, so the pairs file is reproducible too.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from dataclasses import dataclass, field

from faceverify.errors import ConfigError

#: Below this many cross-person pairs, impostors are drawn from the full list.
_ENUMERATE_IMPOSTORS = 1_000_000


@dataclass(frozen=True)
class SplitOptions:
    """How people and their faces are divided.

    Attributes:
        val_share: the share of each training person's faces kept for validation
            (``classification_val``); at least one when the person has two or more, and
            never all of them. 0 makes no validation set. 0.2 suits most sets.
        min_photos: people with fewer usable faces than this are left out (and reported);
            2 is the least that gives a training person a validation image and a held-out
            person a same-person pair. Raise it (5-10) for cleaner classes on large sets.
        pairs_people: how many people to hold out for the verification pairs; None
            uses ``pairs_share``. Held-out people never appear in training.
        pairs_share: the share of people held out when ``pairs_people`` is None (0.2);
            at least 2 are held out (impostor pairs need two people) when any are.
        impostor_ratio: impostor (different-person) pairs per genuine pair; 1 balances
            them. More impostors let a threshold be calibrated at a low false-accept rate.
        max_pairs_per_person: cap on one held-out person's same-person pairs, so that a
            person with many photos does not dominate the file.
        seed: every choice follows from it.
    """

    val_share: float = 0.2
    min_photos: int = 2
    pairs_people: int | None = None
    pairs_share: float = 0.2
    impostor_ratio: float = 1.0
    max_pairs_per_person: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("val_share", "pairs_share"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise ConfigError(f"{name} {value!r} must be at least 0 and below 1, e.g. 0.2")
        if self.min_photos < 1:
            raise ConfigError(f"min_photos {self.min_photos!r} must be at least 1")
        if self.pairs_people is not None and self.pairs_people < 0:
            raise ConfigError(f"pairs_people {self.pairs_people!r} must be 0 or more")
        if self.impostor_ratio < 0 or self.max_pairs_per_person < 1:
            raise ConfigError(
                f"impostor_ratio {self.impostor_ratio!r} must be >= 0 and "
                f"max_pairs_per_person {self.max_pairs_per_person!r} >= 1"
            )


@dataclass
class Split:
    """Where each usable face goes, by person; names are the faces' file names.

    Attributes:
        train: training people and their training faces.
        val: training people and their validation faces (only people with some).
        held_out: held-out people and all their faces.
        too_few: people left out for having fewer than ``min_photos`` faces.
        pairs: ``(person_a, face_a, person_b, face_b, label)`` with 1 for the same person.
    """

    train: dict[str, list[str]] = field(default_factory=dict)
    val: dict[str, list[str]] = field(default_factory=dict)
    held_out: dict[str, list[str]] = field(default_factory=dict)
    too_few: dict[str, list[str]] = field(default_factory=dict)
    pairs: list[tuple[str, str, str, str, int]] = field(default_factory=list)


def split_people(faces: dict[str, list[str]], options: SplitOptions) -> Split:
    """Divide ``{person: [face names]}`` into training, validation and held-out people.

    Raises:
        ConfigError: fewer than two people can be trained on, or ``pairs_people`` asks
            for more people than can be spared.
    """
    split = Split()
    eligible = {p: sorted(names) for p, names in sorted(faces.items()) if len(names) >= options.min_photos}
    split.too_few = {p: sorted(n) for p, n in sorted(faces.items()) if p not in eligible and n}
    if len(eligible) < 2:
        raise ConfigError(
            f"only {len(eligible)} people have at least {options.min_photos} usable photos "
            f"(min_photos); training needs 2 or more: add photos or lower --min-photos"
        )
    count = _held_out_count(len(eligible), options)
    held = set(sorted(eligible, key=lambda p: _rank(options.seed, "person", p))[:count])
    for person, names in eligible.items():
        if person in held:
            split.held_out[person] = names
            continue
        val = _val_count(len(names), options.val_share)
        ordered = sorted(names, key=lambda n: _rank(options.seed, person, n))
        split.train[person] = sorted(ordered[val:])
        if val:
            split.val[person] = sorted(ordered[:val])
    split.pairs = _pairs(split.held_out, options)
    return split


def _held_out_count(people: int, options: SplitOptions) -> int:
    spare = people - 2  # training needs two identities
    if options.pairs_people is not None:
        if options.pairs_people > spare or options.pairs_people == 1:
            raise ConfigError(
                f"pairs_people {options.pairs_people} cannot be held out of {people} usable people: "
                f"use 0 or 2 to {spare} (impostor pairs need 2, training keeps 2)"
            )
        return options.pairs_people
    wanted = round(people * options.pairs_share)
    if options.pairs_share == 0 or spare < 2:
        return 0
    return min(spare, max(2, wanted))


def _val_count(faces: int, share: float) -> int:
    if share == 0 or faces < 2:
        return 0
    return min(faces - 1, max(1, round(faces * share)))


def _rank(seed: int, *key: str) -> bytes:
    """A stable pseudo-random sort key: the same on every platform and Python version."""
    return hashlib.sha256("\0".join((str(seed), *key)).encode()).digest()


def _pairs(held: dict[str, list[str]], options: SplitOptions) -> list[tuple[str, str, str, str, int]]:
    rng = random.Random(options.seed)
    genuine: list[tuple[str, str, str, str, int]] = []
    for person, names in held.items():
        combos = list(itertools.combinations(names, 2))
        if len(combos) > options.max_pairs_per_person:
            combos = sorted(rng.sample(combos, options.max_pairs_per_person))
        genuine += [(person, a, person, b, 1) for a, b in combos]
    wanted = round(len(genuine) * options.impostor_ratio)
    impostors = [(pa, a, pb, b, 0) for pa, a, pb, b in _impostors(held, wanted, rng)]
    pairs = genuine + impostors
    rng.shuffle(pairs)
    return pairs


def _impostors(
    held: dict[str, list[str]], wanted: int, rng: random.Random
) -> list[tuple[str, str, str, str]]:
    """Up to ``wanted`` distinct pairs of faces of two different people."""
    faces = [(person, name) for person, names in held.items() for name in names]
    sizes = [len(names) for names in held.values()]
    available = (len(faces) ** 2 - sum(n * n for n in sizes)) // 2
    if wanted <= 0 or available == 0:
        return []
    if available <= _ENUMERATE_IMPOSTORS:
        every = [(a, b) for a, b in itertools.combinations(faces, 2) if a[0] != b[0]]
        return [(*a, *b) for a, b in rng.sample(every, min(wanted, len(every)))]
    chosen: set[tuple[tuple[str, str], tuple[str, str]]] = set()
    wanted = min(wanted, available // 2)  # keep the draws mostly new
    while len(chosen) < wanted:  # far fewer wanted than available: few draws repeat
        a, b = rng.sample(faces, 2)
        if a[0] != b[0]:
            chosen.add((min(a, b), max(a, b)))
    return [(*a, *b) for a, b in sorted(chosen)]
