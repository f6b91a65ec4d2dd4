"""The grid of an experiment: its units (split, fold, seed) and, in each, the cells to train.

A *unit* is one (split, fold, seed): ``id`` (same subjects, time blocks; fold 0) or ``ood`` fold k
of ``folds`` subject groups. Each cell is ``{"cell", "role", "unit", "deps", "settings"}``: its name
(``<unit>/<what>``), its role (``source``, ``baseline``, ``transfer``), its unit, the source cells it
needs and the settings of its run.
"""

from __future__ import annotations

from pipelines.study.spec import ExperimentConfig, ExperimentError, check_config, parse_pair


def _num(x: float) -> str:
    return f"{x:g}"


def _units(cfg: ExperimentConfig, n_subjects: int) -> list[dict]:
    folds = cfg.folds if cfg.folds is not None else min(n_subjects, 5)
    if "ood" in cfg.splits and not 2 <= folds <= n_subjects:
        raise ExperimentError(f"folds {folds}: out of distribution needs 2..{n_subjects} subject folds "
                              f"({n_subjects} subjects in the data)")
    units = []
    for split in cfg.splits:
        for fold in ([0] if split == "id" else range(folds)):
            for seed in cfg.seeds:
                name = f"id-s{seed}" if split == "id" else f"ood-f{fold}of{folds}-s{seed}"
                units.append({"unit": name, "split": split, "fold": int(fold), "folds": int(folds) if split == "ood" else None,
                              "seed": int(seed)})
    return units


def _transfer_cells(cfg: ExperimentConfig, u: dict, srcs: list[str], t: str, deps: list[str], tx: dict) -> list[dict]:
    """The transfer cells of one pair in one unit: D-CAT at every lambda x MCMA setting, the other
    methods at ``baseline_lambda``, then the misalignment study (a single source only)."""
    cells = []
    tag = f"{'+'.join(srcs)}-to-{t}"
    if "dcat" in cfg.methods:
        for lam in cfg.lambdas:
            for m in cfg.mcma:
                cells.append({"cell": f"{u['unit']}/{tag}-dcat-lam{_num(lam)}-{'mcma' if m else 'nomcma'}",
                              "role": "transfer", "unit": u, "deps": deps,
                              "settings": {**tx, "src": srcs, "tgt": t, "method": "dcat", "lam": float(lam),
                                           "mcma": bool(m)}})
    for method in cfg.methods:
        if method == "dcat":
            continue
        extra = {"temperature": float(cfg.temperature)} if method == "logit-kd" else {}
        cells.append({"cell": f"{u['unit']}/{tag}-{method}-lam{_num(cfg.baseline_lambda)}", "role": "transfer",
                      "unit": u, "deps": deps,
                      "settings": {**tx, "src": srcs, "tgt": t, "method": method,
                                   "lam": float(cfg.baseline_lambda), "mcma": False, **extra}})
    if cfg.shifts and len(srcs) == 1:
        stream = cfg.shift_stream or t
        if stream not in (t, *srcs):
            raise ExperimentError(f"shift_stream {stream}: not a stream of the pair {'+'.join(srcs)}->{t}")
        mags = sorted({abs(float(x)) for x in cfg.shifts if float(x) != 0.0})
        for x in [-m for m in reversed(mags)] + mags:
            cells.append({"cell": f"{u['unit']}/{tag}-dcat-lam{_num(cfg.shift_lambda)}-mcma-shift-{stream}{x:+g}",
                          "role": "transfer", "unit": u, "deps": deps,
                          "settings": {**tx, "src": srcs, "tgt": t, "method": "dcat",
                                       "lam": float(cfg.shift_lambda), "mcma": True,
                                       "misalign": f"{stream}={x:g}", "shift_stream": stream,
                                       "shift_s": float(x)}})
    return cells


def build_cells(cfg: ExperimentConfig, n_subjects: int) -> list[dict]:
    """Every cell of the grid, sources first; each ``{"cell", "role", "unit", "deps", "settings"}``."""
    check_config(cfg)
    train = dict(cfg.train)
    norm = train.pop("norm", None)
    cells = []
    pairs = [parse_pair(p) for p in cfg.pairs]
    sources = sorted({s for srcs, _ in pairs for s in srcs}, key=lambda s: [x for ss, _ in pairs for x in ss].index(s))
    targets = list(dict.fromkeys(t for _, t in pairs))
    for u in _units(cfg, n_subjects):
        base = {"split": u["split"], "fold": u["fold"], "folds": u["folds"], "seed": u["seed"], **train}
        src_cell = {}
        for s in sources:
            name = f"{u['unit']}/src-{s}"
            src_cell[s] = name
            cells.append({"cell": name, "role": "source", "unit": u, "deps": [],
                          "settings": {"stage": "pretrain", "modality": s, **base}})
        tx = {"stage": "transfer", **base, **({"norm": norm} if norm else {})}
        for t in targets:
            srcs = next(ss for ss, tt in pairs if tt == t)
            cells.append({"cell": f"{u['unit']}/base-{t}", "role": "baseline", "unit": u,
                          "deps": [src_cell[s] for s in srcs],
                          "settings": {**tx, "src": srcs, "tgt": t, "method": "none", "lam": 0.0, "mcma": False}})
        for srcs, t in pairs:
            cells += _transfer_cells(cfg, u, srcs, t, [src_cell[s] for s in srcs], tx)
    names = [c["cell"] for c in cells]
    if len(set(names)) != len(names):  # pragma: no cover - a bug
        raise ExperimentError("two cells share a name")
    return cells
