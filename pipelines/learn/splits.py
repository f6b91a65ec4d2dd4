"""Train / validation / test splits that do not leak, reproducible from a seed, stored as ``split.json``.

Three modes (``SplitConfig.split``); the third, ``official`` (a dataset's own protocol, whole
recordings), is :mod:`pipelines.learn.official`:

- ``id`` (in distribution): every subject appears in train, val and test. Each recording's
  timeline is cut into blocks of ``block_s`` seconds (a window belongs to the block holding its
  centre).

  - With ``folds`` K (a blocked K-fold): per subject, the blocks are shuffled (``seed``) and dealt
    to the K folds in turn (balanced over subjects), so every block is in the test part of exactly
    one fold; fold ``fold`` is the test part, and about ``val_frac`` of each subject's blocks (at
    least one when two or more are left) are drawn from the other folds' blocks for val. The fold
    assignment depends on ``seed`` only: the runs of one fold with other training seeds test the
    same blocks (``TrainConfig.split_seed`` defaults to 0 with folds).
  - Without folds (one random split): per subject, the blocks are shuffled (``seed``) and about
    ``test_frac`` of them go to test, ``val_frac`` to val (at least one each when a subject has
    three blocks or more), the rest to train.
- ``ood`` (out of distribution, leave subjects out): the test part is every window of the test
  subjects, named (``test_subjects``) or fold ``fold`` (0-based) of ``folds`` groups of the
  subjects shuffled with ``seed``. Validation (``ood_val``): ``subjects`` (default) holds out
  ``max(1, round(val_frac x n))`` of the n remaining subjects (at least one is left to train on;
  fewer than two remaining subjects is refused), so model selection sees subjects it was not
  trained on, as the test does; ``time`` cuts val from the training subjects' time blocks as in
  ``id``.

Windows overlap (2 s windows every 1 s), so a window that overlaps in time, or comes closer than
``guard_s`` (default 0.25 s: the IMU anti-alias filter and the log-mel frames reach ~0.2 s past a
window's edges), to a window of another part of its recording is dropped: from train first, then
from val; test is never trimmed. No two windows on different sides of the split share a sample.

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
from pipelines.learn.config import OOD_VAL, SplitConfig  # noqa: F401 - the split settings; make_split takes one
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


def _check_folds(cfg: SplitConfig, n_max: int | None = None) -> None:
    if (cfg.fold is None) != (cfg.folds is None):
        raise SplitError("--fold and --folds go together: --fold K --folds N (K in 0..N-1)")
    if cfg.folds is None:
        return
    if cfg.folds < 2 or (n_max is not None and cfg.folds > n_max):
        raise SplitError(f"--folds {cfg.folds}: need 2..{n_max if n_max is not None else 'N'} folds"
                         + (f" for {n_max} subjects" if n_max is not None else ""))
    if not 0 <= cfg.fold < cfg.folds:
        raise SplitError(f"--fold {cfg.fold}: folds are numbered 0..{cfg.folds - 1}")


def check_config(cfg: SplitConfig) -> None:
    """Refuse settings no split can have (before any data is read)."""
    if cfg.split not in ("id", "ood", "official"):
        raise SplitError(f"unknown split '{cfg.split}': use --split id, ood or official")
    test_frac = cfg.test_frac if cfg.split == "id" and cfg.folds is None else 0.0  # else unused
    if not (0 <= cfg.val_frac < 1 and 0 <= cfg.test_frac < 1 and cfg.val_frac + test_frac < 1):
        raise SplitError(f"val_frac={cfg.val_frac} and test_frac={cfg.test_frac} must be in [0, 1)"
                         + (" and sum below 1" if test_frac else ""))
    if cfg.block_s <= 0:
        raise SplitError(f"block_s={cfg.block_s}: the time block length must be positive")
    if not cfg.guard_s >= 0:
        raise SplitError(f"guard_s={cfg.guard_s}: the gap between parts must be 0 or more seconds")
    if cfg.ood_val not in OOD_VAL:
        raise SplitError(f"--ood-val {cfg.ood_val}: use {' or '.join(OOD_VAL)}")
    if cfg.split == "id":
        _check_folds(cfg)


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
        _check_folds(cfg, len(subjects))
        perm = np.random.default_rng([cfg.seed, 0xF01D]).permutation(len(subjects))
        groups = np.array_split(perm, cfg.folds)
        test = sorted(subjects[i] for i in groups[cfg.fold])
    if len(test) == len(subjects):
        raise SplitError(f"all subjects ({', '.join(subjects)}) would be test subjects: leave some for training")
    return test


def _ood_val_subjects(shards, cfg: SplitConfig, test: list[str]) -> list[str]:
    """OOD with ``ood_val="subjects"``: ``max(1, round(val_frac x n))`` of the n non-test subjects
    (at most n - 1), drawn with ``seed``; none when ``val_frac`` is 0."""
    rest = [s for s in _subjects(shards) if s not in test]
    if cfg.ood_val != "subjects" or cfg.val_frac <= 0:
        return []
    if len(rest) < 2:
        raise SplitError(f"--split ood validates on held-out training subjects (--ood-val subjects), which needs "
                         f"at least 2 subjects outside the test set (one to train on, one to validate on); "
                         f"{shards.data_dir} leaves {len(rest)} ({', '.join(rest) or 'none'}): hold out fewer test "
                         "subjects, add subjects, or validate on time blocks of the training subjects "
                         "(--ood-val time)")
    n_val = min(max(1, int(round(cfg.val_frac * len(rest)))), len(rest) - 1)
    perm = np.random.default_rng([cfg.seed, 0x7A15]).permutation(len(rest))
    return sorted(rest[i] for i in perm[:n_val])


def _random_parts(n: int, test_frac: float, val_frac: float, rng) -> tuple[np.ndarray, bool]:
    """One subject's ``n`` blocks: part per block (0 train, 1 val, 2 test) drawn at random, and
    whether the subject had too few blocks for val/test (then all train)."""
    order = rng.permutation(n)
    n_test, n_val = int(round(test_frac * n)), int(round(val_frac * n))
    few = False
    if n >= 3:
        n_test = max(n_test, 1) if test_frac > 0 else 0
        n_val = max(n_val, 1) if val_frac > 0 else 0
    elif test_frac > 0 or val_frac > 0:
        few, n_test, n_val = True, 0, 0
    assign = np.zeros(n, dtype=np.int64)
    assign[order[:n_test]] = 2
    assign[order[n_test:n_test + n_val]] = 1
    return assign, few


def _fold_parts(n: int, first: int, cfg: SplitConfig, rng_fold, rng_val) -> tuple[np.ndarray, np.ndarray]:
    """One subject's ``n`` blocks in the blocked K-fold: blocks shuffled and dealt to the folds
    from fold ``first`` on (so folds stay balanced over subjects); fold ``cfg.fold`` is test, val
    is drawn from the rest. Returns (part per block, fold per block)."""
    fold_of = np.empty(n, dtype=np.int64)
    fold_of[rng_fold.permutation(n)] = (first + np.arange(n)) % cfg.folds
    assign = np.where(fold_of == cfg.fold, 2, 0).astype(np.int64)
    rest = np.flatnonzero(assign == 0)
    if cfg.val_frac > 0 and len(rest) >= 2:
        n_val = min(max(1, int(round(cfg.val_frac * n))), len(rest) - 1)
        assign[rng_val.permutation(rest)[:n_val]] = 1
    return assign, fold_of


def _assign_blocks(by_subject: dict, cfg: SplitConfig, test_frac: float, notes: list) -> dict:
    """Part per (recording, block) unit, subject by subject (sorted)."""
    rng = np.random.default_rng([cfg.seed, 0x5B11])
    rng_fold = np.random.default_rng([cfg.seed, 0xB10C])
    rng_val = np.random.default_rng([cfg.seed, 0xB10C, cfg.fold or 0, 0x7A1])
    kfold = cfg.split == "id" and cfg.folds is not None
    out: dict = {}
    first = 0
    for subj in sorted(by_subject):
        units = by_subject[subj]
        if kfold:
            assign, _ = _fold_parts(len(units), first, cfg, rng_fold, rng_val)
            first = (first + len(units)) % cfg.folds
            if len(units) < cfg.folds:
                notes.append(f"subject {subj} has {len(units)} time block(s) of {cfg.block_s} s for {cfg.folds} "
                             f"folds: {cfg.folds - len(units)} fold(s) test none of its time (lower --block-s)")
        else:
            assign, few = _random_parts(len(units), test_frac, cfg.val_frac, rng)
            if few:
                notes.append(f"subject {subj} has {len(units)} time block(s) of {cfg.block_s} s: all in train "
                             f"(lower --block-s to put it in val/test too)")
        out.update(zip(units, assign.tolist()))
    return out


def _guard(r, p: np.ndarray, guard_s: float) -> int:
    """Drop (part -1) train windows near val/test, then val windows near test; returns how many."""
    dropped = 0
    for victim, others in ((0, (1, 2)), (1, (2,))):
        m_other = np.isin(p, others)
        iv = _merge(r.start_s[m_other], r.end_s[m_other])
        near = _near(r.start_s, r.end_s, iv, guard_s) & (p == victim)
        dropped += int(near.sum())
        p[near] = -1
    return dropped


def make_split(shards, cfg: SplitConfig) -> dict:
    """Assign the windows of a :class:`pipelines.learn.data.ShardSet` to train/val/test; return the
    ``split.json`` record (JSON-able)."""
    check_config(cfg)
    if cfg.split == "official":
        from pipelines.learn.official import official_parts

        part, notes, protocol = official_parts(shards, cfg.protocol, cfg.val_frac, cfg.seed)
        return _finish_split(shards, cfg, part, notes, ["train", "test"] + (["val"] if cfg.val_frac > 0 else []),
                             protocol=protocol)
    ood = cfg.split == "ood"
    ood_test = _ood_test_subjects(shards, cfg) if ood else []
    ood_val = _ood_val_subjects(shards, cfg, ood_test) if ood else []
    test_frac = 0.0 if ood or cfg.folds is not None else cfg.test_frac
    val_frac = 0.0 if ood and cfg.ood_val == "subjects" else cfg.val_frac
    recs = shards.recordings
    part = [np.full(len(r.start_s), -1, dtype=np.int64) for r in recs]  # -1: unassigned
    blocks = [np.zeros(0, np.int64)] * len(recs)
    notes = [f"validation subjects: {', '.join(ood_val)}"] if ood_val else []
    by_subject: dict[str, list[tuple[int, int]]] = {}
    for ri, r in enumerate(recs):
        if r.subject in ood_test or r.subject in ood_val:
            part[ri][:] = 2 if r.subject in ood_test else 1
        elif len(r.start_s):
            centre = (r.start_s + r.end_s) / 2
            blocks[ri] = np.floor((centre - r.start_s[0]) / cfg.block_s + EPS_S).astype(np.int64)
            by_subject.setdefault(r.subject, []).extend((ri, int(b)) for b in np.unique(blocks[ri]))
    cfg_blocks = SplitConfig(**{**asdict(cfg), "val_frac": val_frac})
    for (ri, b), a in _assign_blocks(by_subject, cfg_blocks, test_frac, notes).items():
        part[ri][blocks[ri] == b] = a
    needed = ["train"] + (["val"] if cfg.val_frac > 0 else []) + (["test"] if ood or test_frac > 0 or cfg.folds else [])
    return _finish_split(shards, cfg, part, notes, needed)


def _finish_split(shards, cfg: SplitConfig, part: list[np.ndarray], notes: list[str], needed: list[str],
                  **extra) -> dict:
    """The ``split.json`` record from each window's part (the guard applied); refused when a
    ``needed`` part is empty."""
    dropped = 0
    out_recs = {}
    for ri, r in enumerate(shards.recordings):
        dropped += _guard(r, part[ri], cfg.guard_s)
        out_recs[r.recording_id] = {"subject": r.subject,
                                    **{name: _runs(r.start_s, r.end_s, part[ri] == k) for k, name in enumerate(PARTS)}}
    split = {"encoding-type": SPLIT_TYPE, "encoding-version": "1", "config": asdict(cfg),
             "mode": cfg.split, "seed": cfg.seed, "data": str(shards.data_dir),
             "window_s": shards.settings.get("window_s"), "stride_s": shards.settings.get("stride_s"),
             "recordings": out_recs, "notes": notes, **extra}
    ids = apply_split(shards, split)
    split["n_windows"] = {k: int(len(v)) for k, v in ids.items()}
    split["n_windows"]["dropped_by_guard"] = dropped
    split["subjects"] = {k: sorted(set(shards.subject_of(v).tolist())) for k, v in ids.items()}
    for k in needed:
        if len(ids[k]) == 0:
            raise SplitError(f"the {cfg.tag()} split leaves the {k} part empty ({split['n_windows']}); "
                             "use more recordings, a smaller --block-s, fewer --folds or other fractions")
    return split


def apply_split(shards, split: dict) -> dict[str, np.ndarray]:
    """Global window ids of ``shards`` in each part of ``split`` (windows wholly inside a part's
    interval of their recording). Recordings the split does not name are in no part. A window
    without a label (``y`` -1: label "", from ``dcat preprocess --labels ignore``) can only train
    (a transfer's alignment term): it is in no validation or test part."""
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
    ids = {k: (np.concatenate(v) if v else np.zeros(0, np.int64)).astype(np.int64) for k, v in out.items()}
    for k in ("val", "test"):
        ids[k] = ids[k][shards.y[ids[k]] >= 0]
    return ids


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


def overlapping(a: list, b: list, gap_s: float = 0.0) -> list[tuple[list, list]]:
    """Pairs of intervals from ``a`` and ``b`` that share more than an instant of time, or (``gap_s``
    > 0) come closer than ``gap_s`` to each other."""
    out = []
    for x in a:
        for y in b:
            if x[0] < y[1] + gap_s - EPS_S and y[0] < x[1] + gap_s - EPS_S:
                out.append((x, y))
    return out


#: (source part, target part) pairs that must not share time: the source was fitted on its
#: training part and selected (early stopping, best epoch) on its validation part
_FORBIDDEN = (("train", "val"), ("train", "test"), ("val", "test"))
_NAMES = {"train": "training", "val": "validation"}


def check_transfer_split(source: dict, target: dict, source_name: str = "source") -> None:
    """Refuse (``SplitError``) when the source's training part holds any time of the target's val
    or test parts, when the source's validation part holds any of the target's test time (the
    source's best epoch was chosen on it), or when the target's test subjects (OOD) are among the
    source's training or validation subjects. Time closer than the target's guard (``guard_s`` of its
    config) counts as shared."""
    problems = []
    gap = float((target.get("config") or {}).get("guard_s") or 0.0)
    if target.get("mode") == "ood":
        tgt_test = {r["subject"] for r in target["recordings"].values() if r.get("test")}
        for part in ("train", "val"):
            src_subjects = {r["subject"] for r in source["recordings"].values() if r.get(part)}
            both = sorted(tgt_test & src_subjects)
            if both:
                problems.append(f"test subject(s) {', '.join(both)} are in the source's {_NAMES[part]} part")
    for rid, t in target["recordings"].items():
        s = source["recordings"].get(rid)
        if not s:
            continue
        for s_part, t_part in _FORBIDDEN:
            hits = overlapping(s.get(s_part, []), t.get(t_part, []), gap)
            if hits:
                x, y = hits[0]
                how = "overlaps" if overlapping([x], [y]) else f"comes within {gap:g} s (the guard) of"
                problems.append(f"{rid}: target {t_part} time {y[0]:g}-{y[1]:g} s {how} source {_NAMES[s_part]} "
                                f"time {x[0]:g}-{x[1]:g} s ({len(hits)} such interval(s))")
    if problems:
        more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
        raise SplitError(f"the {source_name} was trained or selected on data the target is validated/tested on: "
                         + "; ".join(problems[:5]) + more
                         + ". Use the source's split (leave the split options out of `dcat transfer`), or "
                           "pretrain the source again with the same --split/--split-seed/--fold/--test-subjects")
