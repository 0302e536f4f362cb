#!/usr/bin/env python3
"""Trains Lantern's mental-health model and writes it as the JSON file `mental_health.model` names.

    python3 -m pip install -r tools/mh/requirements.txt
    python3 tools/mh/train.py --out config/mh-model.json            # every training corpus
    python3 tools/mh/train.py --out /tmp/m.json --exclude dev-d1     # hold the dev set out, to tune

C and the threshold were chosen with the dev sets held out (--exclude dev-d1 --exclude blind2,
and o4.jsonl out of training): C=128 gave the best recall at 1% false alarms on o4 (C from 4 to
256 tried), and threshold 0.45 gave, with lexicon and patterns, precision 0.976 and recall 0.957
on dev-d1 + blind2, and 3 false alarms in o4's 600 ordinary notes. The shipped model is then
trained on everything but the sealed sets.

Three logistic regressions (scikit-learn), all over the features of `features.py`:
  detector  mental health or not, over words, word pairs and character 3-5-grams;
  category  which of the ten categories, for model-only flags (positives only, words and pairs);
  severity  low, medium or high, for model-only flags (positives only, words and pairs).
Training notes: tests/data/mh-corpus*.tsv and tests/data/mh-train/*.jsonl (with --exclude, the
dev set and blind2 can be held out for tuning). The sealed sets in tests/data/sealed are never read.

Besides the model it writes `<out>.check.jsonl`: notes with the scores this script computes, which
a Rust test compares with the scores Lantern computes, so the two feature extractors cannot drift.
"""

import argparse
import csv
import json
import math
import pathlib
import random
import sys

import numpy as np
from scipy.sparse import csr_matrix
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import features as F  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
TSV_TRAIN = ["mh-corpus.tsv", "mh-corpus-holdout.tsv", "mh-corpus-blind.tsv", "mh-corpus-blind2.tsv"]


def load(exclude: list[str]) -> list[dict]:
    notes = []
    for name in TSV_TRAIN:
        if any(e in name for e in exclude):
            continue
        with open(DATA / name, newline="") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                mh = row["label"] == "1"
                notes.append({"notes": row["note"], "mh": mh, "cat": None, "sev": row["severity"] if mh else None, "src": name})
    for path in sorted((DATA / "mh-train").glob("*.jsonl")):
        if any(e in path.name for e in exclude):
            continue
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                notes.append({"notes": r["notes"], "mh": r["mh"], "cat": r["cat"] if r["mh"] else None, "sev": r["sev"] if r["mh"] else None, "src": path.name})
    return notes


def matrix(notes, extract, vocab=None, min_df=2):
    rows = [extract(n["notes"]) for n in notes]
    if vocab is None:
        df = {}
        for counts, _ in rows:
            for f in counts:
                df[f] = df.get(f, 0) + 1
        vocab = {f: i for i, f in enumerate(sorted(f for f, d in df.items() if d >= min_df))}
    data, indices, indptr = [], [], [0]
    for counts, total in rows:
        s = F.scale(total)
        for f, c in counts.items():
            j = vocab.get(f)
            if j is not None:
                indices.append(j)
                data.append(c * s)
        indptr.append(len(indices))
    return csr_matrix((data, indices, indptr), shape=(len(rows), len(vocab))), vocab


def weights_of(model, vocab, rows=None, floor=1e-4):
    coef = model.coef_ if rows is None else model.coef_
    out = {}
    for f, j in vocab.items():
        if coef.shape[0] == 1:
            w = float(coef[0, j])
            if abs(w) >= floor:
                out[f] = round(w, 5)
        else:
            ws = [round(float(coef[k, j]), 5) for k in range(coef.shape[0])]
            if max(abs(w) for w in ws) >= floor:
                out[f] = ws
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--exclude", action="append", default=[], help="leave out corpora whose file name holds this")
    ap.add_argument("--C", type=float, default=128.0, help="inverse regularisation of the detector")
    ap.add_argument("--threshold", type=float, default=0.45, help="score at which the model flags (tuned on the dev set)")
    # 0.15 was tried: on the dev set it removed one false flag and lost one true one, and it let
    # the model drop a note saying "wants to end his life" amid HTML junk. A cue stands.
    ap.add_argument("--veto", type=float, default=0.0, help="score below which a cue or pattern does not flag (0: never)")
    ap.add_argument("--cv", action="store_true", help="print 5-fold cross-validated figures first")
    args = ap.parse_args()

    notes = load(args.exclude)
    y = np.array([1 if n["mh"] else 0 for n in notes])
    print(f"{len(notes)} training notes, {int(y.sum())} mental health", file=sys.stderr)

    if args.cv:
        skf = StratifiedKFold(n_splits=5, shuffle=True, random_state=7)
        oof = np.zeros(len(notes))
        for tr, te in skf.split(np.zeros(len(notes)), y):
            Xtr, voc = matrix([notes[i] for i in tr], F.features)
            Xte, _ = matrix([notes[i] for i in te], F.features, voc)
            m = LogisticRegression(C=args.C, max_iter=2000, solver="liblinear").fit(Xtr, y[tr])
            oof[te] = m.predict_proba(Xte)[:, 1]
        for t in (0.3, 0.4, 0.5, 0.6, 0.7):
            p = oof >= t
            tp = int((p & (y == 1)).sum())
            print(f"cv threshold {t}: precision {tp / max(p.sum(), 1):.3f} recall {tp / y.sum():.3f}", file=sys.stderr)

    X, vocab = matrix(notes, F.features)
    detector = LogisticRegression(C=args.C, max_iter=2000, solver="liblinear").fit(X, y)

    pos = [n for n in notes if n["mh"]]
    with_cat = [n for n in pos if n["cat"]]
    Xc, cvocab = matrix(with_cat, F.word_features)
    cats = sorted({n["cat"] for n in with_cat})
    category = LogisticRegression(C=4.0, max_iter=3000).fit(Xc, [cats.index(n["cat"]) for n in with_cat])
    with_sev = [n for n in pos if n["sev"] in ("low", "medium", "high")]
    Xs, svocab = matrix(with_sev, F.word_features)
    sevs = ["low", "medium", "high"]
    severity = LogisticRegression(C=4.0, max_iter=3000).fit(Xs, [sevs.index(n["sev"]) for n in with_sev])

    model = {
        "format": "lantern-mental-health-model",
        "version": 1,
        "notes": len(notes),
        "corpora": sorted({n["src"] for n in notes}),
        "features": {"max_word_chars": F.MAX_WORD_CHARS, "char_ngrams": list(F.CHAR_NGRAMS), "word_ngrams": [1, 2]},
        "threshold": args.threshold,
        "veto": args.veto,
        "detector": {"bias": round(float(detector.intercept_[0]), 5), "weights": weights_of(detector, vocab)},
        "category": {"classes": cats, "bias": [round(float(b), 5) for b in category.intercept_], "weights": weights_of(category, cvocab)},
        "severity": {"classes": sevs, "bias": [round(float(b), 5) for b in severity.intercept_], "weights": weights_of(severity, svocab)},
    }
    out = pathlib.Path(args.out)
    out.write_text(json.dumps(model, separators=(",", ":"), sort_keys=True) + "\n")
    print(f"wrote {out}: {len(model['detector']['weights'])} detector features", file=sys.stderr)

    # Golden scores from the exported weights (rounded as written), for the Rust test.
    rng = random.Random(11)
    sample = rng.sample(notes, 40) + [{"notes": t} for t in ("", "   ", "Ça va? he’s NOT ok — 07700 900123!!", "a" * 100, "ÉCOLE 日本 😀 o'neil")]
    w = model["detector"]["weights"]
    with open(str(out) + ".check.jsonl", "w") as f:
        for n in sample:
            counts, total = F.features(n["notes"])
            s = F.scale(total)
            z = model["detector"]["bias"] + sum(w.get(k, 0.0) * c * s for k, c in counts.items())
            f.write(json.dumps({"notes": n["notes"], "score": 1 / (1 + math.exp(-z))}) + "\n")


if __name__ == "__main__":
    main()
