#!/usr/bin/env python3
"""Mental-health detection figures for a labelled corpus, through `lantern replay`.

    python3 tools/mh/evaluate.py --lantern target/release/lantern --config config/lantern.toml CORPUS.jsonl [...]

A corpus is JSON lines `{"id", "notes", "mh", "cat"}` (or the older TSV `label, severity, note`).
Each note becomes one call; a note counts as flagged when replay publishes a mental-health flag
for its call. Prints precision and recall with 95% Wilson intervals, recall per category, the
false-alarm rate among notes that are not mental health, and with --misses every note it got wrong
with the reasons Lantern gave.
"""

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import tempfile
from collections import defaultdict


def wilson(k, n, z=1.96):
    if n == 0:
        return (0.0, 0.0)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (c - h, c + h)


def load(path):
    rows = []
    if path.endswith(".tsv"):
        with open(path, newline="") as f:
            for i, r in enumerate(csv.DictReader(f, delimiter="\t")):
                rows.append({"id": f"{os.path.basename(path)}-{i}", "notes": r["note"], "mh": r["label"] == "1", "cat": None})
    else:
        for line in open(path):
            if line.strip():
                rows.append(json.loads(line))
    return rows


def run(lantern, config, rows):
    d = tempfile.mkdtemp(prefix="lantern-eval-")
    events = os.path.join(d, "events.jsonl")
    with open(events, "w") as f:
        for i, r in enumerate(rows):
            f.write(json.dumps({"event_id": f"e{i}", "call_id": f"c{i}", "kind": "offered", "occurred_at": "2026-11-01T10:00:00+00:00",
                                "channel": "999", "notes": r["notes"]}) + "\n")
    env = dict(os.environ, LANTERN_PSEUDONYM_KEY="evaluate")
    p = subprocess.run([lantern, "replay", "--config", config, events], capture_output=True, text=True, env=env)
    if p.returncode != 0:
        sys.exit(p.stderr)
    flags = {}
    for line in p.stdout.splitlines():
        if line.startswith("{"):
            v = json.loads(line)
            if v.get("kind") == "mental_health":
                flags[int(v["call_id"][1:])] = v
    return flags


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lantern", default="target/release/lantern")
    ap.add_argument("--config", default="config/lantern.toml")
    ap.add_argument("--misses", action="store_true")
    ap.add_argument("corpora", nargs="+")
    args = ap.parse_args()
    rows = [r for c in args.corpora for r in load(c)]
    flags = run(args.lantern, args.config, rows)
    tp = fp = fn = 0
    by_cat = defaultdict(lambda: [0, 0])
    by_source = defaultdict(int)
    wrong = []
    for i, r in enumerate(rows):
        f = flags.get(i)
        if r["mh"]:
            by_cat[r.get("cat") or "-"][1] += 1
            if f:
                tp += 1
                by_cat[r.get("cat") or "-"][0] += 1
                for s in {x.get("source") for x in f["reasons"] if not x.get("negated")}:
                    by_source[s] += 1
            else:
                fn += 1
                wrong.append(("MISS", r, None))
        elif f:
            fp += 1
            wrong.append(("FALSE", r, f))
    neg = sum(1 for r in rows if not r["mh"])
    pos = tp + fn
    p_lo, p_hi = wilson(tp, tp + fp)
    r_lo, r_hi = wilson(tp, pos)
    print(f"notes {len(rows)}: {pos} mental health, {neg} not")
    if tp + fp:
        print(f"precision {tp / (tp + fp):.3f} (95% CI {p_lo:.3f}-{p_hi:.3f}), {tp} of {tp + fp} flags")
    if pos:
        print(f"recall    {tp / pos:.3f} (95% CI {r_lo:.3f}-{r_hi:.3f}), {tp} of {pos}")
    if neg:
        a_lo, a_hi = wilson(fp, neg)
        print(f"false alarms {fp / neg:.4f} (95% CI {a_lo:.4f}-{a_hi:.4f}), {fp} of {neg}")
    for c, (k, n) in sorted(by_cat.items()):
        print(f"  recall {c:<20} {k / n:.3f} ({k}/{n})")
    print("  true flags by source (a flag may have several): " + ", ".join(f"{s} {n}" for s, n in sorted(by_source.items())))
    if args.misses:
        for kind, r, f in wrong:
            why = "" if f is None else " <- " + "; ".join(f"{x['source']}:{x['cue']}" + (f" {x.get('terms')}" if x.get("terms") else "") for x in f["reasons"] if not x.get("negated"))
            print(f"{kind} [{r.get('cat')}] {r['notes']}{why}")


if __name__ == "__main__":
    main()
