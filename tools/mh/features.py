"""Features of a call note for Lantern's mental-health model.

This is the reference for `services/flagger/src/detect/model/features.rs`: both must turn a note
into exactly the same features, and `train.py` writes golden scores that a Rust test checks.

A note becomes words: lower case, curly quotes made plain, apostrophes dropped ("he's" -> "hes"),
split on anything that is not a letter or digit, ASCII digits made 0, each word cut to 30
characters. Features, each counted:
  w:<word>            every word
  b:<word> <word>     every pair of neighbouring words
  c:<3 to 5 chars>    every character 3-, 4- and 5-gram of " <word> "
Each count is divided by the square root of the number of features the note produced, so long
and short notes score on one scale.
"""

import math
import re
from collections import Counter

MAX_WORD_CHARS = 30
CHAR_NGRAMS = (3, 4, 5)
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201b": "'", "\u2032": "'", "`": "'"})


def words(note: str) -> list[str]:
    text = note.lower().translate(_QUOTES).replace("'", "")
    out = []
    current = []
    for ch in text:
        if ch.isalnum():
            current.append("0" if "0" <= ch <= "9" else ch)
        elif current:
            out.append("".join(current[:MAX_WORD_CHARS]))
            current = []
    if current:
        out.append("".join(current[:MAX_WORD_CHARS]))
    return out


def char_grams(word: str):
    padded = " " + word + " "
    for n in CHAR_NGRAMS:
        for i in range(len(padded) - n + 1):
            yield "c:" + padded[i : i + n]


def features(note: str) -> tuple[Counter, int]:
    """The feature counts of a note and how many features it produced in all."""
    ws = words(note)
    counts = Counter()
    for w in ws:
        counts["w:" + w] += 1
        for g in char_grams(w):
            counts[g] += 1
    for a, b in zip(ws, ws[1:]):
        counts["b:" + a + " " + b] += 1
    return counts, sum(counts.values())


def word_features(note: str) -> tuple[Counter, int]:
    """Words and word pairs only: what the category and severity models read."""
    ws = words(note)
    counts = Counter("w:" + w for w in ws)
    for a, b in zip(ws, ws[1:]):
        counts["b:" + a + " " + b] += 1
    return counts, sum(counts.values())


def scale(total: int) -> float:
    return 1.0 / math.sqrt(total) if total else 0.0
