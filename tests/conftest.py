import gzip
import logging
import os
import random
from pathlib import Path

import lightning.pytorch  # noqa: F401 (see below)
import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Lightning's logger gets its own stderr handler, and stops propagating, when it is first imported while the root
# logger has no handler. Where that import happens under pytest depends on which test runs first: inside a test
# that captures output (capsys) the handler would hold that test's stream, closed when the test ends, and every
# later in-process fit would print a logging traceback; here, before pytest's handlers are on the root logger,
# its records would never reach caplog. So Lightning is imported here and its records go to the root logger,
# where pytest captures them, in every order the tests run in.
for _name in ("lightning.pytorch", "lightning.fabric"):  # Fabric's logger says "Seed set to ..."
    _logger = logging.getLogger(_name)
    for _handler in list(_logger.handlers):
        _logger.removeHandler(_handler)
    _logger.propagate = True

if os.environ.get("PYTEST_XDIST_WORKER"):
    # README's test command runs two pytest-xdist workers on the two cores CI has: one thread each, or every
    # matrix product would wait on a thread the other worker holds
    torch.set_num_threads(1)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the group marks
def pytest_collection_modifyitems(config, items):
    """Tests that compare with the scale-out runs (the ``runs`` fixture of tests/lightning/conftest.py: several
    multi-process fits, made once a session) share one xdist worker, so that no other worker waits for them.
    With pytest 9.2 and pytest-xdist 3.8 the group does not take (see ``runs``): the fits are still made once."""
    for item in items:
        if "runs" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("scaleout"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def _data_cache(tmp_path_factory, monkeypatch):
    """Each test gets its own data cache (swapformer.data.cache), never the user's ~/.cache/swapformer."""
    monkeypatch.setenv("SWAPFORMER_CACHE_DIR", str(tmp_path_factory.mktemp("swapformer-cache")))


# ---- generated corpora: tests stand on the repository alone -----------------------------------------------
_SPEAKERS = (
    "First Citizen",
    "Second Citizen",
    "All",
    "MENENIUS",
    "CORIOLANUS",
    "LADY ANNE",
    "Nurse",
    "ROMEO",
)
_WORDS = (  # noqa: SIM905 (a list literal of 82 words would take 82 lines)
    "the and to of a my that in is not you it with his be your for this but he have what as thou so him will "
    "me by thy all do no shall if are we our on thee lord now love good sir well more from they or let man "
    "yet heart death speak we'll know't o'er 'tis ne'er hath doth night king crown blood sweet fair noble "
    "gentle citizens corn price verdict resolved famish patricians authority café naïve fiancée"
).split()
_PHRASES = {  # English -> German, word for word: enough for a tokenizer and a translation model to learn from
    "det": {"a": "ein", "the": "der", "two": "zwei", "one": "ein"},
    "adj": {"young": "junger", "old": "alter", "little": "kleiner", "white": "weißer", "red": "roter",
            "happy": "glücklicher", "tall": "großer", "black": "schwarzer"},
    "noun": {"man": "Mann", "woman": "Frau", "girl": "Mädchen", "boy": "Junge", "dog": "Hund", "bike": "Fahrrad",
             "ball": "Ball", "crowd": "Menge", "building": "Gebäude", "beach": "Strand", "hat": "Hut"},
    "verb": {"walks": "geht", "runs": "läuft", "sits": "sitzt", "stands": "steht", "plays": "spielt",
             "climbs": "klettert", "rides": "fährt", "looks": "schaut"},
    "prep": {"on": "auf", "in": "in", "near": "neben", "under": "unter", "through": "durch", "behind": "hinter"},
}  # fmt: skip


def play_text(chars: int, *, seed: int = 0) -> str:
    """``chars`` characters laid out as tiny shakespeare is: a speaker's name and a colon on its own line, one
    to six lines of words, a blank line; punctuation, contractions, a few accented words (several bytes each
    in UTF-8), and now and then a line indented or ending in a space (the places a chunked encoding must not
    cut at). Deterministic for a ``seed``."""
    rng = random.Random(seed)
    speeches, size = [], 0
    while size < chars:
        lines = [f"{rng.choice(_SPEAKERS)}:"]
        for _ in range(rng.randint(1, 6)):
            line = " ".join(rng.choices(_WORDS, k=rng.randint(2, 11)))
            line = line[0].upper() + line[1:] + rng.choice(",,,..;:!?")
            shape = rng.random()
            lines.append(f"  {line}" if shape < 0.03 else f"{line} " if shape < 0.06 else line)
        speech = "\n".join(lines) + "\n\n"
        speeches.append(speech)
        size += len(speech)
    return "".join(speeches)[:chars]


def sentence_pairs(count: int, *, seed: int = 0) -> tuple[list[str], list[str]]:
    """``count`` German sentences and their English translations (``Ein junger Mann läuft auf der Strand .`` /
    ``A young man runs on the beach .``), as Multi30k's files hold them: one sentence a line."""
    rng = random.Random(seed)
    german, english = [], []
    for _ in range(count):
        slots = ("det", "adj", "noun", "verb", "prep", "det", "noun")[: rng.choice((4, 7))]
        words = [rng.choice(list(_PHRASES[slot].items())) for slot in slots]
        for side, sentence in ((english, [en for en, _ in words]), (german, [de for _, de in words])):
            side.append(" ".join([sentence[0].capitalize(), *sentence[1:], "."]))
    return german, english


@pytest.fixture(scope="session")
def generated_data(tmp_path_factory) -> Path:
    """A folder laid out as the optional data folder ``../shared/data``, with generated contents:
    ``tinyshakespeare/input.txt`` (:func:`play_text`, as large as the real one) and
    ``multi30k/{train,val,test_2016_flickr}.{de,en}.gz`` (:func:`sentence_pairs`; 1000 / 100 / 100 pairs).
    For tests of the code that reads them, not of what a model learns from the real corpora."""
    root = tmp_path_factory.mktemp("generated-data")
    (root / "tinyshakespeare").mkdir()
    (root / "tinyshakespeare" / "input.txt").write_text(play_text(1_115_394), encoding="utf-8")
    (root / "multi30k").mkdir()
    for seed, (split, count) in enumerate((("train", 1000), ("val", 100), ("test_2016_flickr", 100))):
        for lang, lines in zip(("de", "en"), sentence_pairs(count, seed=seed), strict=True):
            data = ("\n".join(lines) + "\n").encode("utf-8")
            (root / "multi30k" / f"{split}.{lang}.gz").write_bytes(gzip.compress(data, mtime=0))
    return root
