"""Run the fuzz suite's cases (tests/test_fuzz.py) without pytest and print the counts per kind and
the failing case classes (mutation, command, problem), one line each with a case to reproduce.

    python benchmarks/fuzz_counts.py            # the default (CI) set
    python benchmarks/fuzz_counts.py --full     # the full set (pytest --fuzz-full)
    python benchmarks/fuzz_counts.py --json out.json

Same cases, same oracle as the pytest suite (``DCAT_FUZZ_SEED`` / ``DCAT_FUZZ_CASE`` apply too).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import test_fuzz as tf  # noqa: E402  (selection, bases; the harness itself is fuzzharness)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="the full set")
    ap.add_argument("--json", type=Path, help="write every outcome and the summary here")
    a = ap.parse_args()
    t0 = time.time()
    with tempfile.TemporaryDirectory() as d:
        base = tf.build_bases(Path(d) / "base")
        tf.warm_imports()
        outcomes = []
        for i, (kind, seed) in enumerate(tf.selected(a.full)):
            try:
                outcomes.append(tf.run_case(kind, seed, base, Path(d) / f"c{i}"))
            except Exception as e:  # a harness bug: counted as a failure, the run goes on
                o = tf.Outcome(kind, seed, "?", "?", "fail", [f"harness: {type(e).__name__}: {e}"])
                outcomes.append(o)
    s = tf.summarize(outcomes)
    print(tf.format_summary(s))
    print(f"{len(outcomes)} cases in {time.time() - t0:.0f} s")
    classes: dict[tuple, list] = {}
    for o in outcomes:
        for p in o.problems:
            cmd, _, what = p.partition(": ")
            what = re.sub(r"/tmp/\S+", "<tmp>", what)
            what = re.sub(r"\d{3,}", "N", what)
            classes.setdefault((o.kind, o.mutation.split("#")[0].split(":")[0], cmd, what[:160]), []).append(o.seed)
    if classes:
        print("\nfailing classes (kind | mutation | command | problem | seeds):")
        for (kind, mut, cmd, what), seeds in sorted(classes.items()):
            print(f"- {kind} | {mut} | {cmd} | {what} | seeds {seeds[:6]}")
    if a.json:
        a.json.write_text(json.dumps({"summary": s, "outcomes": [o.__dict__ for o in outcomes]}, indent=1))


if __name__ == "__main__":
    main()
