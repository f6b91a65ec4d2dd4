"""The grid of an experiment: its units (split, fold, seed) and, in each, the cells to train.

A *unit* is one (split, fold, seed): ``id`` fold k of ``id_folds`` time-block folds (or one split by
``test_frac`` with ``id_folds = 1``) or ``ood`` fold k of ``folds`` subject groups. Every split is
drawn with ``split_seed``, so the seeds of one fold train and test on the same windows: a fold is
one test set, its seeds are repeated trainings on it.

Each cell is ``{"cell", "role", "unit", "deps", "sources", "settings"}``: its name
(``<unit>/<what>``), its role, its unit, the cells it needs, the cell of each source stream (a
transfer) and the settings of its run. Roles:

- ``baseline``: a target stream pretrained alone (``dcat pretrain``); the same run is the source
  of a transfer that starts from this stream (one run serves as both);
- ``source``: a source stream that is no target, pretrained alone;
- ``null``: the target's baseline again with seed + ``NULL_SEED_OFFSET`` (same split);
- ``reference``: the classical reference (``features-rf``) on the target stream;
- ``transfer``: a transfer method (D-CAT, logit KD, feature KD, the misalignment study).
"""

from __future__ import annotations

from pipelines.study.spec import (NULL_SEED_OFFSET, REFERENCE_METHODS, ExperimentConfig, ExperimentError, check_config,
                                  parse_pair)


def _num(x: float) -> str:
    return f"{x:g}"


def _unit_name(split: str, fold: int, n: int, seed: int) -> str:
    return f"{split}-s{seed}" if (split != "ood" and n == 1) else f"{split}-f{fold}of{n}-s{seed}"


def _units(cfg: ExperimentConfig, n_subjects: int) -> list[dict]:
    folds = cfg.folds if cfg.folds is not None else min(n_subjects, 5)
    if "ood" in cfg.splits and not 2 <= folds <= n_subjects:
        raise ExperimentError(f"folds {folds}: out of distribution needs 2..{n_subjects} subject folds "
                              f"({n_subjects} subjects in the data)")
    units = []
    for split in cfg.splits:
        n = folds if split == "ood" else (1 if split == "official" else int(cfg.id_folds))
        for fold in range(n):
            for seed in cfg.seeds:
                nf = None if (split != "ood" and n == 1) else n
                units.append({"unit": _unit_name(split, fold, n, seed), "split": split, "fold": int(fold), "folds": nf,
                              "seed": int(seed), "first_seed_unit": _unit_name(split, fold, n, cfg.seeds[0])})
    return units


def oof_folds(cfg: ExperimentConfig) -> int:
    """K of the sources' out-of-fold cross-fitting: ``[train] oof_folds``, else the transfers' default."""
    from dataclasses import fields

    from pipelines.learn.config import TransferConfig

    k = cfg.train.get("oof_folds")
    return int(k) if k else int(next(f.default for f in fields(TransferConfig) if f.name == "oof_folds"))


def uses_mcma(cfg: ExperimentConfig) -> bool:
    """Whether a transfer of the grid masks by its sources' correctness (D-CAT with MCMA on, or the
    misalignment study, which runs with MCMA on)."""
    return "dcat" in cfg.methods and (True in cfg.mcma or bool(cfg.shifts))


def _transfer_cells(cfg: ExperimentConfig, u: dict, srcs: list[str], t: str, src_cells: dict, tx: dict) -> list[dict]:
    """The transfer cells of one pair in one unit: D-CAT at every lambda x MCMA setting, the other
    methods at ``baseline_lambda``, then the misalignment study (a single source only)."""
    cells = []
    tag = f"{'+'.join(srcs)}-to-{t}"
    deps = [src_cells[s] for s in srcs]
    sources = {s: src_cells[s] for s in srcs}

    def cell(name: str, settings: dict) -> dict:
        return {"cell": f"{u['unit']}/{tag}-{name}", "role": "transfer", "unit": u, "deps": deps, "sources": sources,
                "settings": {**tx, "src": srcs, "tgt": t, **settings}}

    if "dcat" in cfg.methods:
        for lam in cfg.lambdas:
            for m in cfg.mcma:
                cells.append(cell(f"dcat-lam{_num(lam)}-{'mcma' if m else 'nomcma'}",
                                  {"method": "dcat", "lam": float(lam), "mcma": bool(m)}))
    for method in cfg.methods:
        if method == "dcat" or method in REFERENCE_METHODS:
            continue
        extra = {"temperature": float(cfg.temperature)} if method == "logit-kd" else {}
        cells.append(cell(f"{method}-lam{_num(cfg.baseline_lambda)}",
                          {"method": method, "lam": float(cfg.baseline_lambda), "mcma": False, **extra}))
    if cfg.shifts and len(srcs) == 1 and "dcat" in cfg.methods:
        stream = cfg.shift_stream or t
        if stream not in (t, *srcs):
            raise ExperimentError(f"shift_stream {stream}: not a stream of the pair {'+'.join(srcs)}->{t}")
        mags = sorted({abs(float(x)) for x in cfg.shifts if float(x) != 0.0})
        for x in [-m for m in reversed(mags)] + mags:
            cells.append(cell(f"dcat-lam{_num(cfg.shift_lambda)}-mcma-shift-{stream}{x:+g}",
                              {"method": "dcat", "lam": float(cfg.shift_lambda), "mcma": True,
                               "misalign": f"{stream}={x:g}", "shift_stream": stream, "shift_s": float(x)}))
    return cells


def _alone_cells(cfg: ExperimentConfig, u: dict, streams: list[str], targets: list[str], base: dict,
                 oof: set) -> tuple[list[dict], dict]:
    """Each stream pretrained alone once (a target's run is its baseline and, where the stream is a
    source too, that source), then per target the null and the classical reference. Returns (the
    cells, stream -> the cell of its pretrained run). ``oof``: the streams whose source cell computes its
    out-of-fold correctness."""
    cells, alone = [], {}
    for s in streams:
        is_target = s in targets
        name = f"{u['unit']}/{'base' if is_target else 'src'}-{s}"
        if not is_target and cfg.shared_sources and u["unit"] != u["first_seed_unit"]:
            alone[s] = f"{u['first_seed_unit']}/src-{s}"  # trained once per fold, with the first seed
            continue
        alone[s] = name
        st = {"stage": "pretrain", "modality": s, **base}
        if s in oof:  # a source of an MCMA transfer: its pretraining computes its out-of-fold correctness
            st["oof_folds"] = oof_folds(cfg)
        if not is_target and cfg.source_label_fraction is not None:
            st["label_fraction"] = float(cfg.source_label_fraction)
        cells.append({"cell": name, "role": "baseline" if is_target else "source", "unit": u, "deps": [],
                      "settings": st})
    for t in targets:
        if cfg.null:
            cells.append({"cell": f"{u['unit']}/null-{t}", "role": "null", "unit": u, "deps": [],
                          "settings": {"stage": "pretrain", "modality": t, **base,
                                       "seed": u["seed"] + NULL_SEED_OFFSET}})
        for m in cfg.methods:
            if m in REFERENCE_METHODS:  # on the very split of the target's baseline run
                cells.append({"cell": f"{u['unit']}/{m}-{t}", "role": "reference", "unit": u, "deps": [alone[t]],
                              "sources": {t: alone[t]}, "settings": {"stage": m, "modality": t, **base}})
    return cells, alone


def build_cells(cfg: ExperimentConfig, n_subjects: int) -> list[dict]:
    """Every cell of the grid, each unit's pretrained runs first; each ``{"cell", "role", "unit",
    "deps", "sources", "settings"}`` (``sources``: a transfer's stream -> cell, else empty)."""
    check_config(cfg)
    train = dict(cfg.train)
    norm = train.pop("norm", None)
    train.pop("oof_folds", None)  # the sources' cross-fitting: only in the cells that need it
    cells = []
    pairs = [parse_pair(p) for p in cfg.pairs]
    targets = list(dict.fromkeys(t for _, t in pairs))
    streams = list(dict.fromkeys([s for ss, _ in pairs for s in ss] + targets))
    oof = {s for ss, _ in pairs for s in ss} if uses_mcma(cfg) else set()
    k = {"oof_folds": oof_folds(cfg)} if oof else {}
    for u in _units(cfg, n_subjects):
        base = {"split": u["split"], "fold": u["fold"], "folds": u["folds"], "seed": u["seed"],
                "split_seed": int(cfg.split_seed), **train}
        alone_cells, alone = _alone_cells(cfg, u, streams, targets, base, oof)
        for c in alone_cells:
            c.setdefault("sources", {})
        cells += alone_cells
        tx = {"stage": "transfer", **base, **({"norm": norm} if norm else {}), **k}
        for srcs, t in pairs:
            cells += _transfer_cells(cfg, u, srcs, t, alone, tx)
    names = [c["cell"] for c in cells]
    if len(set(names)) != len(names):  # pragma: no cover - a bug
        raise ExperimentError("two cells share a name")
    return cells
