"""Train / validation / test splits that do not leak, reproducible from a seed, stored as ``split.json``.

Two modes (``SplitConfig.split``):

- ``id`` (in distribution): every subject appears in train, val and test. Each recording's
  timeline is cut into blocks of ``block_s`` seconds (a window belongs to the block holding its
  centre); per subject, the blocks are shuffled (``seed``) and about ``test_frac`` of them go to
  test, ``val_frac`` to val (at least one each when a subject has three blocks or more), the rest to
  train. Windows overlap (2 s windows every 1 s), so a window that overlaps in time, or comes
  closer than ``guard_s``, to a window of another part is dropped: from train first, then from
  val; test is never trimmed. No two windows on different sides of the split share a sample.
- ``ood`` (out of distribution, leave subjects out): the test part is every window of the test
  subjects, named (``test_subjects``) or fold ``fold`` (0-based) of ``folds`` groups of the
  subjects shuffled with ``seed``. Val is cut from the remaining subjects by time blocks as in
  ``id`` (so early stopping never sees a test subject).

``split.json`` stores, per recording, the time intervals ``[start_s, end_s]`` each part covers
(runs of consecutive windows), not window indices: a split applies to any shards of the same
recordings (e.g. shards that hold only the target stream) and two splits can be compared for
leakage by time (:func:`check_transfer_split`).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from pipelines.core.errors import DcatError
from pipelines.learn.config import SplitConfig  # noqa: F401 - the split settings; make_split takes one
from pipelines.core.io import to_json

PARTS = ("train", "val", "test")
SPLIT_TYPE = "dcat-split"
EPS_S = 1e-6


class SplitError(DcatError):
    """A split that cannot be made, or one that would leak test data into training."""


def _merge(starts: np.ndarray, ends: np.ndarray) -> list[list[float]]:
    """Union of intervals (sorted by start) as a list of [start, end]."""
    out: list[list[float]] = []
    for s, e in sorted(zip(starts.tolist(), ends.tolist())):
        if out and s <= out[-1][1] + EPS_S:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return out


def _near(starts, ends, intervals, guard_s: float) -> np.ndarray:
    """Which windows [starts, ends] overlap, or come within ``guard_s`` of, any of ``intervals``."""
    hit = np.zeros(len(starts), dtype=bool)
    if not intervals:
        return hit
    iv = np.asarray(intervals, dtype=np.float64)
    # first interval whose end + guard > window start
    k = np.searchsorted(iv[:, 1] + guard_s, np.asarray(starts) + EPS_S, side="right")
    ok = k < len(iv)
    kk = np.minimum(k, len(iv) - 1)
    hit[ok] = (iv[kk[ok], 0] - guard_s) < (np.asarray(ends)[ok] - EPS_S)
    return hit


def _runs(starts, ends, mask) -> list[list[float]]:
    """Intervals covered by runs of consecutive windows where ``mask`` holds."""
    out = []
    i, n = 0, len(mask)
    while i < n:
        if not mask[i]:
            i += 1
            continue
        j = i
        while j + 1 < n and mask[j + 1]:
            j += 1
        out.append([float(starts[i]), float(ends[j])])
        i = j + 1
    return out


def _subjects(shards) -> list[str]:
    return sorted({r.subject for r in shards.recordings})


def _ood_test_subjects(shards, cfg: SplitConfig) -> list[str]:
    subjects = _subjects(shards)
    if cfg.test_subjects:
        missing = [s for s in cfg.test_subjects if s not in subjects]
        if missing:
            raise SplitError(f"test subjects {missing} are not in {shards.data_dir} (subjects: {', '.join(subjects)})")
        test = sorted(set(cfg.test_subjects))
    else:
        if cfg.folds is None or cfg.fold is None:
            raise SplitError("--split ood needs the held-out subjects: --test-subjects s03,s04, or --fold K --folds N")
        if cfg.folds < 2 or cfg.folds > len(subjects):
            raise SplitError(f"--folds {cfg.folds}: need 2..{len(subjects)} folds for {len(subjects)} subjects")
        if not 0 <= cfg.fold < cfg.folds:
            raise SplitError(f"--fold {cfg.fold}: folds are numbered 0..{cfg.folds - 1}")
        perm = np.random.default_rng([cfg.seed, 0xF01D]).permutation(len(subjects))
        groups = np.array_split(perm, cfg.folds)
        test = sorted(subjects[i] for i in groups[cfg.fold])
    if len(test) == len(subjects):
        raise SplitError(f"all subjects ({', '.join(subjects)}) would be test subjects: leave some for training")
    return test


def make_split(shards, cfg: SplitConfig) -> dict:
    """Assign the windows of a :class:`pipelines.learn.data.ShardSet` to train/val/test; return the
    ``split.json`` record (JSON-able)."""
    if cfg.split not in ("id", "ood"):
        raise SplitError(f"unknown split '{cfg.split}': use --split id or --split ood")
    if not (0 <= cfg.val_frac < 1 and 0 <= cfg.test_frac < 1 and cfg.val_frac + cfg.test_frac < 1):
        raise SplitError(f"val_frac={cfg.val_frac} and test_frac={cfg.test_frac} must be in [0, 1) and sum below 1")
    if cfg.block_s <= 0:
        raise SplitError(f"block_s={cfg.block_s}: the time block length must be positive")
    rng = np.random.default_rng([cfg.seed, 0x5B11])
    ood_test = _ood_test_subjects(shards, cfg) if cfg.split == "ood" else []
    test_frac = 0.0 if cfg.split == "ood" else cfg.test_frac
    recs = shards.recordings
    # part per window, -1: unassigned
    part = [np.full(len(r.start_s), -1, dtype=np.int64) for r in recs]
    notes = []
    by_subject: dict[str, list[tuple[int, int]]] = {}
    for ri, r in enumerate(recs):
        if r.subject in ood_test:
            part[ri][:] = 2
            continue
        if len(r.start_s) == 0:
            continue
        centre = (r.start_s + r.end_s) / 2
        blk = np.floor((centre - r.start_s[0]) / cfg.block_s + EPS_S).astype(np.int64)
        for b in np.unique(blk):
            by_subject.setdefault(r.subject, []).append((ri, int(b)))
        part[ri] = -2 - blk  # temporarily: block id encoded
    for subj in sorted(by_subject):
        units = by_subject[subj]
        order = rng.permutation(len(units))
        n = len(units)
        n_test = int(round(test_frac * n))
        n_val = int(round(cfg.val_frac * n))
        if n >= 3:
            n_test = max(n_test, 1) if test_frac > 0 else 0
            n_val = max(n_val, 1) if cfg.val_frac > 0 else 0
        elif test_frac > 0 or cfg.val_frac > 0:
            notes.append(f"subject {subj} has {n} time block(s) of {cfg.block_s} s: all in train "
                         f"(lower --block-s to put it in val/test too)")
            n_test = n_val = 0
        assign = np.zeros(n, dtype=np.int64)
        assign[order[:n_test]] = 2
        assign[order[n_test:n_test + n_val]] = 1
        for (ri, b), a in zip(units, assign):
            p = part[ri]
            p[p == -2 - b] = a
    dropped = 0
    out_recs = {}
    for ri, r in enumerate(recs):
        p = part[ri]
        # guard: drop train windows near val/test, then val windows near test
        for victim, others in ((0, (1, 2)), (1, (2,))):
            m_other = np.isin(p, others)
            iv = _merge(r.start_s[m_other], r.end_s[m_other])
            near = _near(r.start_s, r.end_s, iv, cfg.guard_s) & (p == victim)
            dropped += int(near.sum())
            p[near] = -1
        rec = {"subject": r.subject}
        for k, name in enumerate(PARTS):
            rec[name] = _runs(r.start_s, r.end_s, p == k)
        out_recs[r.recording_id] = rec
    split = {"encoding-type": SPLIT_TYPE, "encoding-version": "1", "config": asdict(cfg),
             "mode": cfg.split, "seed": cfg.seed, "data": str(shards.data_dir),
             "window_s": shards.settings.get("window_s"), "stride_s": shards.settings.get("stride_s"),
             "recordings": out_recs, "notes": notes}
    ids = apply_split(shards, split)
    split["n_windows"] = {k: int(len(v)) for k, v in ids.items()}
    split["n_windows"]["dropped_by_guard"] = dropped
    split["subjects"] = {k: sorted(set(shards.subject_of(v).tolist())) for k, v in ids.items()}
    needed = ["train"] + (["val"] if cfg.val_frac > 0 else []) + (["test"] if cfg.split == "ood" or test_frac > 0 else [])
    for k in needed:
        if len(ids[k]) == 0:
            raise SplitError(f"the {cfg.split} split leaves the {k} part empty ({split['n_windows']}); "
                             "use more recordings, a smaller --block-s, or other fractions")
    return split


def apply_split(shards, split: dict) -> dict[str, np.ndarray]:
    """Global window ids of ``shards`` in each part of ``split`` (windows wholly inside a part's
    interval of their recording). Recordings the split does not name are in no part."""
    out = {k: [] for k in PARTS}
    recs = split.get("recordings", {})
    for ri, r in enumerate(shards.recordings):
        spec = recs.get(r.recording_id)
        if spec is None:
            continue
        base = shards.offsets[ri]
        for name in PARTS:
            iv = spec.get(name) or []
            if not iv:
                continue
            a = np.asarray(iv, dtype=np.float64)
            k = np.searchsorted(a[:, 0], r.start_s + EPS_S, side="right") - 1
            ok = k >= 0
            inside = np.zeros(len(r.start_s), dtype=bool)
            inside[ok] = r.end_s[ok] <= a[k[ok], 1] + EPS_S
            out[name].append(base + np.flatnonzero(inside))
    return {k: (np.concatenate(v) if v else np.zeros(0, np.int64)).astype(np.int64) for k, v in out.items()}


def save_split(path: Path, split: dict) -> None:
    from pipelines.core.io import atomic_write_text

    atomic_write_text(Path(path), to_json(split, indent=1))


def load_split(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise SplitError(f"{path}: no split file; is this a run directory written by `dcat pretrain` or `dcat transfer`?")
    s = json.loads(path.read_text())
    if s.get("encoding-type") != SPLIT_TYPE or s.get("encoding-version") != "1":
        raise SplitError(f"{path}: not a dcat split (version 1); re-create the run with this dcat version")
    return s


def overlapping(a: list, b: list) -> list[tuple[list, list]]:
    """Pairs of intervals from ``a`` and ``b`` that share more than an instant of time."""
    out = []
    for x in a:
        for y in b:
            if x[0] < y[1] - EPS_S and y[0] < x[1] - EPS_S:
                out.append((x, y))
    return out


def check_transfer_split(source: dict, target: dict, source_name: str = "source") -> None:
    """Refuse (``SplitError``) when the source's training part holds any time of the target's val
    or test parts, or (OOD) any of the target's test subjects."""
    problems = []
    src_train_subjects = {r["subject"] for r in source["recordings"].values() if r.get("train")}
    if target.get("mode") == "ood":
        tgt_test = {r["subject"] for r in target["recordings"].values() if r.get("test")}
        both = sorted(tgt_test & src_train_subjects)
        if both:
            problems.append(f"test subject(s) {', '.join(both)} are in the source's training set")
    for rid, t in target["recordings"].items():
        s = source["recordings"].get(rid)
        if not s:
            continue
        for part in ("val", "test"):
            hits = overlapping(s.get("train", []), t.get(part, []))
            if hits:
                x, y = hits[0]
                problems.append(f"{rid}: target {part} time {y[0]:g}-{y[1]:g} s overlaps source training time "
                                f"{x[0]:g}-{x[1]:g} s ({len(hits)} overlap(s))")
    if problems:
        more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
        raise SplitError(f"the {source_name} was trained on data the target is validated/tested on: "
                         + "; ".join(problems[:5]) + more
                         + ". Use the source's split (leave the split options out of `dcat transfer`), or "
                           "pretrain the source again with the same --split/--seed/--test-subjects")
