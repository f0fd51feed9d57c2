"""Seeded synthetic sequence-to-sequence tasks: copy, reverse, sort and date normalisation.

Train and validation examples are disjoint by construction: a target belongs to the validation pool when
``crc32(target) % 20 == 0`` (about 5% of all targets), and each split only keeps examples from its own
pool. Validation exact-match therefore measures generalisation, not memorisation.
"""

from __future__ import annotations

import random
import string
import zlib
from collections.abc import Callable
from typing import Any

from swapformer.data.dates import sample_date_pair
from swapformer.data.errors import DataError

__all__ = ["SPLITS", "TASKS", "generate_task", "in_validation_pool"]

Pair = tuple[str, str]
Sampler = Callable[[random.Random], Pair]

TASKS = ("copy", "reverse", "sort", "dates")
SPLITS = ("train", "val", "all")
_VAL_BUCKETS = 20
_ALPHABETS = {"letters": string.ascii_lowercase, "digits": string.digits}


def in_validation_pool(target: str) -> bool:
    """Whether examples with this target belong to the validation split (about 1 in 20 targets)."""
    return zlib.crc32(target.encode("utf-8")) % _VAL_BUCKETS == 0


def generate_task(
    name: str, *, num_examples: int, seed: int, split: str = "all", **options: Any
) -> list[Pair]:
    """Generate ``num_examples`` (source, target) string pairs of a synthetic task.

    Tasks and their options:

    * ``copy``: ``"hello" -> "hello"``; ``reverse``: ``"hello" -> "olleh"``; ``sort``: ``"hello" -> "ehllo"``.
      Options ``min_len`` (default 4), ``max_len`` (default 16) and ``alphabet`` (``"letters"`` for a-z,
      the default, or ``"digits"``).
    * ``dates``: ``"Friday, March 5, 2021" -> "2021-03-05"``, dates between 1900 and 2099 in 21 formats and
      3 letter cases (see :mod:`swapformer.data.dates`). No options.

    Args:
        name: One of :data:`TASKS`.
        num_examples: How many pairs to return (duplicates are possible).
        seed: Random seed; the same arguments always give the same pairs.
        split: ``"train"`` or ``"val"`` to draw only from that split's targets (the two never share a
            target), or ``"all"``.
        **options: Task options listed above.

    Returns:
        The pairs.

    Raises:
        DataError: If the task, split or an option is unknown or out of range, or the task has too few
            distinct targets to fill the requested split.
    """
    if name not in TASKS:
        raise DataError(f"unknown synthetic task {name!r}; choose one of {list(TASKS)}.")
    if split not in SPLITS:
        raise DataError(f"split={split!r} is not one of {list(SPLITS)}.")
    if not isinstance(num_examples, int) or num_examples < 1:
        raise DataError(f"num_examples={num_examples!r} must be a positive integer.")
    sampler = _dates_sampler(**options) if name == "dates" else _sequence_sampler(name, **options)
    rng = random.Random(seed)
    wanted = {"train": False, "val": True}.get(split)
    pairs: list[Pair] = []
    max_attempts = 200 * num_examples + 10_000
    for _ in range(max_attempts):
        pair = sampler(rng)
        if wanted is None or in_validation_pool(pair[1]) == wanted:
            pairs.append(pair)
            if len(pairs) == num_examples:
                return pairs
    raise DataError(
        f"task {name!r} with options {options} found only {len(pairs)} of {num_examples} {split!r} examples "
        f"in {max_attempts} draws: it has too few distinct targets. Raise max_len or use a larger alphabet."
    )


def _sequence_sampler(
    name: str, *, min_len: int = 4, max_len: int = 16, alphabet: str = "letters", **unknown: Any
) -> Sampler:
    if unknown:
        raise DataError(
            f"task {name!r} does not accept option(s) {sorted(unknown)}; accepted: min_len, max_len, alphabet."
        )
    if alphabet not in _ALPHABETS:
        raise DataError(f"alphabet={alphabet!r} is not one of {list(_ALPHABETS)}.")
    if not (isinstance(min_len, int) and isinstance(max_len, int) and 1 <= min_len <= max_len):
        raise DataError(
            f"min_len={min_len!r} and max_len={max_len!r} must be integers with 1 <= min_len <= max_len."
        )
    symbols = _ALPHABETS[alphabet]
    transform: Callable[[str], str] = {
        "copy": lambda text: text,
        "reverse": lambda text: text[::-1],
        "sort": lambda text: "".join(sorted(text)),
    }[name]

    def sample(rng: random.Random) -> Pair:
        source = "".join(rng.choices(symbols, k=rng.randint(min_len, max_len)))
        return source, transform(source)

    return sample


def _dates_sampler(**unknown: Any) -> Sampler:
    if unknown:
        raise DataError(f"task 'dates' takes no options, got {sorted(unknown)}.")
    return sample_date_pair
