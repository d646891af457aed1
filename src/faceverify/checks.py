"""Argument checks every layer shares, so that one rule gives one message everywhere."""

from __future__ import annotations

from collections.abc import Sequence

from faceverify.errors import ConfigError, FaceVerifyError


def check_choice(
    what: str, value: object, valid: Sequence[str], *, error: type[FaceVerifyError] = ConfigError
) -> str:
    """``value`` if it is one of ``valid``, else ``error`` naming the value and the options.

    Args:
        what: how the user knows the setting, e.g. ``"loss.head"`` or ``"match mode"``.
        error: the class to raise; a layer with its own error class (the gallery) passes it.
    """
    if value not in valid:
        raise error(f"{what} {value!r} is unknown; valid: {', '.join(valid)}")
    return str(value)


def check_threshold(threshold: float) -> float:
    """A cosine threshold in [-1, 1], as a float."""
    if not -1.0 <= float(threshold) <= 1.0:
        raise ConfigError(f"threshold {threshold!r} is not a cosine similarity; use a value in [-1, 1]")
    return float(threshold)
