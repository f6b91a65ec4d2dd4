"""The settings of ``dcat pretrain`` (:class:`TrainConfig`) and ``dcat transfer``
(:class:`TransferConfig`), each option declared once: its field holds the default and the help,
and the command line, the experiment spec's ``[train]`` keys (:data:`EXPERIMENT_TRAIN_KEYS`) and the
README's option tables are derived from it (:mod:`pipelines.core.options`).

Imports no torch (the command line builds its options from these classes at start-up).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from pipelines.core.errors import DcatError, TrainingError
from pipelines.core.io import parse_list
from pipelines.core.options import check_options, experiment_keys, opt

NORMS = ("fro", "seqlen", "none")
DEFAULT_NORM = "fro"
METHODS = ("dcat", "logit-kd", "feature-kd", "none")
#: the name of each method's transfer term in the loss terms and metrics.jsonl (``train_<term>``)
METHOD_TERMS = {"dcat": "ca", "logit-kd": "kd", "feature-kd": "fkd", "none": None}
DEFAULT_TEMPERATURE = 4.0
#: MCMA on an unlabelled window: the source counts as right when its top-class probability is at least this
MCMA_CONFIDENCE = 0.5
#: folds K of a source's cross-fitting for out-of-fold MCMA correctness (pipelines.learn.crossfit)
DEFAULT_OOF_FOLDS = 5

SPLIT_HELP = ("`id`: same subjects in train/val/test, split by time blocks (`--block-s`) with windows near a block of "
              "another part dropped (`--guard-s`); with `--fold`/`--folds` a blocked K-fold (each block tested in one "
              "fold); `ood`: leave subjects out (`--test-subjects` or `--fold`/`--folds`), validation on held-out "
              "training subjects (`--ood-val`); `official`: the dataset's own protocol (`--protocol`), from the "
              "splits.json that `dcat import` wrote and `dcat preprocess` carried into the shards folder")
#: default gap between windows of different parts: the IMU anti-alias filter and the log-mel frames
#: reach ~0.2 s past a window's edges, so touching windows of two parts share input samples
DEFAULT_GUARD_S = 0.25
OOD_VAL = ("subjects", "time")
SPLITS = ("id", "ood", "official")
#: where IMU/audio input statistics come from (``--standardize``)
STANDARDIZE = ("train", "manifest", "none")
METHOD_HELP = ("what the target learns from the frozen source(s): `dcat` (CE + lambda * D-CAT alignment of K^T V), "
               "`logit-kd` (CE + lambda * T^2 * KL(source softmax(z/T) // target softmax(z/T))), `feature-kd` "
               "(CE + lambda * MSE(P(target pooled embedding), source pooled embedding), P a learned linear "
               "projection kept in the checkpoint, unused at inference), `none` (plain CE on the same split and "
               "budget: the no-transfer baseline; the source only gives the split and d); `--mcma` masks every "
               "method's term per source")
NORM_HELP = ("normalisation of K^T V before the Frobenius distance: `fro` (divide by its Frobenius norm; length- "
             "and scale-invariant, the distance is in [0, 2], on the scale of the cross-entropy, so --lambda 0.1-1 "
             "works for any --d; a design choice for that reason, not a measured winner), `seqlen` (divide by the token count: keeps "
             "the scale, so the distance grows with d; use a 10-100x smaller --lambda), `none` (raw; grows with "
             "the sequence lengths)")


@dataclass
class SplitConfig:
    """How the windows are split (:func:`pipelines.learn.splits.make_split`)."""

    split: str = "id"
    seed: int = 0
    val_frac: float = 0.15
    test_frac: float = 0.2
    block_s: float = 10.0
    guard_s: float = DEFAULT_GUARD_S
    test_subjects: list = field(default_factory=list)
    fold: int | None = None
    folds: int | None = None
    ood_val: str = "subjects"
    protocol: str | None = None

    def key(self) -> tuple:
        """Every setting that decides the split (two configs with equal keys make the same split)."""
        return (self.split, self.seed, sorted(self.test_subjects), self.fold, self.folds, self.val_frac,
                self.test_frac, self.block_s, self.guard_s, self.ood_val if self.split == "ood" else None,
                self.protocol if self.split == "official" else None)

    def tag(self) -> str:
        """A short name for run folders: ``id``, ``id-fold1of5``, ``ood-s03+s04``, ``ood-fold1of5``."""
        if self.split == "id":
            return "id" if self.folds is None else f"id-fold{self.fold}of{self.folds}"
        if self.split == "official":
            return "official" if not self.protocol else f"official-{self.protocol}"
        if self.test_subjects:
            return "ood-" + "+".join(self.test_subjects)
        return f"ood-fold{self.fold}of{self.folds}"


class MisalignError(DcatError):
    """A --misalign value that cannot be used."""


LABEL_FRACTION_WHY = ("give a share of the training windows in (0, 1] (1: every label; 0.1: one window in ten "
                      "keeps its label)")


def check_label_fraction(fraction) -> float:
    """``--label-fraction`` as a float in (0, 1], or a :class:`TrainingError` saying what to give."""
    try:
        f = float(fraction)
    except (TypeError, ValueError, OverflowError):
        f = float("nan")
    if isinstance(fraction, bool) or not (0.0 < f <= 1.0):
        raise TrainingError(f"--label-fraction {fraction}: {LABEL_FRACTION_WHY}")
    return f


def parse_misalign(spec) -> dict[str, float]:
    """``"imu=0.5"`` / ``"imu=0.5,audio=-0.2"`` / ``{"imu": 0.5}`` -> ``{stream: seconds}``."""
    if spec in (None, "", {}):
        return {}
    if isinstance(spec, dict):
        items = list(spec.items())
    else:
        items = []
        for part in parse_list(str(spec)):
            if "=" not in part:
                raise MisalignError(f"--misalign {spec}: write STREAM=SECONDS, e.g. imu=0.5 (several: imu=0.5,audio=-0.2)")
            k, v = part.split("=", 1)
            items.append((k.strip(), v.strip()))
    out: dict[str, float] = {}
    for k, v in items:
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise MisalignError(f"--misalign {spec}: '{v}' is not a number of seconds") from None
        if not math.isfinite(x):
            raise MisalignError(f"--misalign {spec}: the shift of '{k}' must be finite")
        if not k:
            raise MisalignError(f"--misalign {spec}: a shift without a stream name")
        out[str(k)] = x
    return out


def format_misalign(m: dict[str, float]) -> str:
    return ",".join(f"{k}={v:g}" for k, v in sorted(m.items()))


@dataclass
class TrainConfig:
    """Settings of ``dcat pretrain`` (and the shared part of ``dcat transfer``); each field's help
    is the command line's and the README's.

    The split's seed is ``split_seed`` (default: ``seed``; with ``folds``: 0), so several
    initialisations (``seed``) share one split, and with folds every seed of fold k tests the same
    blocks / subjects (:class:`pipelines.learn.splits.SplitConfig`). Optimisation: AdamW,
    ``warmup_epochs`` of linear warm-up then cosine decay to 0 at ``epochs``; the best epoch and early
    stopping by the validation score of :mod:`pipelines.learn.selection` (``val_smooth``,
    ``min_epochs``, ``patience``).
    """

    data: str = opt("shards", "shards directory (from `dcat preprocess`)")
    modality: str = opt("imu", "stream to train on (e.g. video, imu, audio, imu_wrist)", short="-m",
                        required=True)
    runs: str = opt("runs", "parent folder of runs")
    out: str | None = opt(None, "run folder (default: `<runs>/<modality>-<split>`)")
    split: str | None = opt("id", SPLIT_HELP, choices=SPLITS)
    seed: int = opt(0, "seed of the initialisation and the data order, and of the split unless --split-seed or "
                    "--folds is given", ge=0)
    split_seed: int | None = opt(None, "seed of the split alone, to train several initialisations on one split "
                                 "(default: --seed; with --folds: 0, so every --seed of a fold tests the same data)", ge=0)
    val_frac: float | None = opt(0.15, "fraction of time blocks (per subject) for validation; OOD with "
                                 "--ood-val subjects: fraction of the training subjects (at least one)",
                                 experiment=True, ge=0, lt=1)
    test_frac: float | None = opt(0.2, "ID without --folds: fraction of time blocks (per subject) for test",
                                  experiment=True, ge=0, lt=1)
    block_s: float | None = opt(10.0, "length of the time blocks the split assigns, seconds",
                                experiment=True, gt=0)
    guard_s: float | None = opt(DEFAULT_GUARD_S, "least gap (s) between windows of different parts (the IMU "
                                "filter and log-mel frames reach ~0.2 s past a window)", experiment=True, ge=0)
    test_subjects: list | None = opt(None, "OOD: comma-separated held-out subjects", items=str)
    fold: int | None = opt(None, "which fold (0-based) of --folds is the test set (ID: time blocks, OOD: subjects)", ge=0)
    folds: int | None = opt(None, "number of folds: ID, blocked K-fold over each subject's time blocks; OOD, "
                            "subject groups", ge=2)
    ood_val: str | None = opt("subjects", "OOD validation: `subjects` (held-out training subjects) or `time` "
                              "(time blocks of the training subjects)", choices=OOD_VAL)
    protocol: str | None = opt(None, "with `--split official`: which protocol of the shards folder's splits.json "
                               "(written by `dcat import`; default: the dataset's main one)", experiment=True)
    d: int | None = opt(64, "attention width (source and target must share it for D-CAT)",
                        experiment=True, ge=1)
    heads: int = opt(4, "attention heads", experiment=True, ge=1)
    depth: int = opt(1, "self-attention blocks (K, V come from the last)", experiment=True, ge=1)
    dropout: float = opt(0.1, "dropout in the attention block and before the classifier",
                         experiment=True, ge=0, lt=1)
    video_frames: int = opt(8, "video frames kept per window, evenly spaced (0: all)",
                            experiment=True, ge=0)
    standardize: str = opt("train", "IMU/audio input statistics: from the `train` windows (up to 512), `manifest` "
                           "(IMU: the shards' stored sums over the training recordings, exact; refused when a training "
                           "recording also holds val/test time, as in distribution), or `none`", experiment=True, choices=STANDARDIZE)
    epochs: int = opt(20, "most epochs (the LR schedule spans them)", experiment=True, ge=1, why="train at least 1 epoch")
    batch_size: int = opt(32, "windows per step (under torchrun: the global batch)",
                          experiment=True, ge=1)
    lr: float = opt(2e-3, "AdamW peak learning rate (linear warm-up, cosine decay)",
                    experiment=True, ge=0)
    weight_decay: float = opt(0.05, "AdamW weight decay (weights only, not biases/norms)",
                              experiment=True, ge=0)
    warmup_epochs: float = opt(1.0, "epochs of linear learning-rate warm-up", experiment=True, ge=0)
    patience: int = opt(6, "stop after this many epochs without a better validation score (0: never)", experiment=True, ge=0)
    val_smooth: int = opt(3, "the validation score that selects the best epoch and drives --patience: the mean "
                          "validation macro-F1 of the last K epochs (1: the epoch's own; the former rule is "
                          "`--val-smooth 1 --min-epochs 0`)", experiment=True, ge=1, why="average at least 1 epoch (1: no smoothing)")
    min_epochs: int | None = opt(None, "no epoch before this one (1-based) is selected, and no early stop before "
                                 "it (default: 3/4 of --epochs, rounded up, where the cosine schedule is below 15% "
                                 "of the peak LR; 0: from the first)", experiment=True, ge=0)
    grad_clip: float = opt(1.0, "largest gradient norm (0: no clipping)", experiment=True, ge=0)
    label_fraction: float = opt(1.0, "share of the training windows that keep their label (per class, drawn with "
                                "the split's seed and fold, the same for every run of the split); the others train "
                                "only a transfer's alignment term, never the cross-entropy; an epoch is still as "
                                "many steps as the whole training part (the labelled windows are visited "
                                "round(1/F) times)", experiment=True, gt=0, le=1, why=LABEL_FRACTION_WHY)
    oof_folds: int = opt(0, "also compute the out-of-fold correctness MCMA uses (`<run>/oof-correct.npz`: K copies "
                         "of this model, each trained without one fold of the training time blocks and judged on "
                         "it); 0: not now (`dcat transfer` computes it when first needed)", experiment=True, ge=0)
    augment: bool = opt(False, "light augmentation (video flips; IMU/audio gain + noise); in transfer both "
                        "streams, which turns the source cache off", flag="--augment/--no-augment", experiment=True)
    device: str = opt("auto", "`auto` (CUDA with bf16 autocast when present), `cpu`, `cuda`, `cuda:1`")
    threads: int = opt(1, "CPU threads for torch (recorded in config.json); 1: the same numbers on any machine "
                       "and load; 0: one per idle core (depends on the machine's load)", ge=0)
    workers: int = opt(-1, "DataLoader worker processes (-1: 0 on a CPU, 4 per process on a GPU)", ge=-1)
    block_mb: float = opt(32.0, "MiB read per block of consecutive windows", experiment=True, gt=0)
    compile: bool = opt(False, "torch.compile the model (GPU)")
    resume: bool = opt(False, "continue the run in --out from its last.pt (same result as uninterrupted)")
    overwrite: bool = opt(False, "replace an existing run folder")

    def __post_init__(self):
        if isinstance(self.test_subjects, str):
            self.test_subjects = parse_list(self.test_subjects) or None
        check_options(self, TrainingError)  # types and ranges, as each field declares them

    def split_config(self) -> SplitConfig:
        d = SplitConfig()
        seed = self.split_seed if self.split_seed is not None else (0 if self.folds is not None else self.seed)
        return SplitConfig(split=self.split or d.split, seed=seed,
                           val_frac=d.val_frac if self.val_frac is None else self.val_frac,
                           test_frac=d.test_frac if self.test_frac is None else self.test_frac,
                           block_s=d.block_s if self.block_s is None else self.block_s,
                           guard_s=d.guard_s if self.guard_s is None else self.guard_s,
                           test_subjects=list(self.test_subjects or []), fold=self.fold, folds=self.folds,
                           ood_val=self.ood_val or d.ood_val, protocol=self.protocol)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


_EXPLICIT = "explicit split only (default: the source run's split)"


@dataclass
class TransferConfig(TrainConfig):
    """Settings of ``dcat transfer``: the training settings of :class:`TrainConfig` plus the
    transfer's. Split options left as None mean: use the (first) source run's split. ``d`` defaults
    to (and, for ``dcat``, must equal) the sources' width. See :mod:`pipelines.learn.transfer`."""

    src: str = opt("video", "source stream (frozen teacher), e.g. video; or several, comma-separated "
                   "(video,audio): the loss is then CE + lambda * sum_k w_k * L_k, MCMA per source", required=True)
    tgt: str = opt("imu", "target stream (trained, deployed alone), e.g. imu", required=True)
    src_ckpt: str | None = opt(None, "source checkpoint or run folder; several sources: one per source, "
                               "comma-separated in --src order (default: the pretrain run for each source under "
                               "--runs with the same split)")
    src_weights: list | None = opt(None, "several sources: one weight w_k per source, comma-separated in --src "
                                   "order, e.g. 1,0.5 (default: 1 each)", items=float, ge=0)
    method: str = opt("dcat", METHOD_HELP, choices=METHODS)
    lam: float = opt(1.0, "weight of the transfer term (D-CAT: the paper finds 0.1-1 works, 10 degrades)",
                     flag="--lambda", ge=0)
    temperature: float = opt(DEFAULT_TEMPERATURE, "logit-kd: softmax temperature T (the term is scaled by T^2)", gt=0)
    mcma: bool = opt(True, "masked cross-modal alignment: count each source's term only on windows that source "
                     "classifies correctly (every method)", flag="--mcma/--no-mcma")
    mcma_correctness: str = opt("oof", "how MCMA judges a source correct on a training window: `oof` (by the "
                                "copy of the source that did not train on it: K-fold cross-fitting over the "
                                "source's training part, computed once per source run and cached there), "
                                "`insample` (by the source itself, which trained on it: keeps nearly every window)", choices=("oof", "insample"))
    mcma_confidence: float = opt(MCMA_CONFIDENCE, "MCMA on a training window without a label (--label-fraction, "
                                 "or unlabelled shards): its term counts when the source's top-class probability "
                                 "is at least this (out of fold with `--mcma-correctness oof`)", experiment=True, ge=0, le=1)
    oof_folds: int = opt(DEFAULT_OOF_FOLDS, "folds K of the source's cross-fitting for `--mcma-correctness oof` (K extra "
                         "trainings of the source, once per source run)", experiment=True, ge=0)
    norm: str = opt(DEFAULT_NORM, NORM_HELP, experiment=True, choices=NORMS)
    tgt_init: str | None = opt(None, "start the target from this checkpoint (default: from scratch)")
    cache: str = opt("auto", "cache what the method needs of each frozen source per window (K^T V, logits or "
                     "pooled embedding, and correctness): `auto` (unless --augment), `on`, `off`", choices=("auto", "on", "off"))
    misalign: str | None = opt(None, "synchronization-robustness study: STREAM=SECONDS pairs the streams as if "
                               "that stream were late by that much when training (imu=0.5: the imu window [t, t+2) "
                               "is aligned with the source's window [t+0.5, t+2.5), read 0.5 s later; negative: "
                               "earlier); windows whose shifted partner leaves its stored run or the training "
                               "part's time are masked from the transfer term; needs the source cache")
    modality: str = opt("imu", "the target stream (set from --tgt)", cli=False)
    out: str | None = opt(None, "run folder (default: `<runs>/<src>-to-<tgt>-<split>`, "
                          "`<runs>/<src>-to-<tgt>-<method>-<split>` for the baselines, sources joined with `+`)")
    split: str | None = opt(None, "default: the source run's split. " + SPLIT_HELP, choices=SPLITS)
    seed: int = opt(0, "seed of the initialisation and data order (and of the split when split options without "
                    "--split-seed/--folds are given)", ge=0)
    val_frac: float | None = opt(None, "fraction of time blocks for validation; " + _EXPLICIT + ", else 0.15", experiment=True, ge=0, lt=1)
    test_frac: float | None = opt(None, "ID: fraction of time blocks for test; " + _EXPLICIT + ", else 0.2", experiment=True, ge=0, lt=1)
    block_s: float | None = opt(None, "time block length, seconds; " + _EXPLICIT + ", else 10",
                                experiment=True, gt=0)
    guard_s: float | None = opt(None, "least gap (s) between parts; " + _EXPLICIT + f", else {DEFAULT_GUARD_S:g}",
                                experiment=True, ge=0)
    ood_val: str | None = opt(None, "OOD validation, `subjects` or `time`; " + _EXPLICIT + ", else subjects", choices=OOD_VAL)
    d: int | None = opt(None, "attention width of the target (default: the sources'; D-CAT needs it equal)", experiment=True, ge=1)

    def __post_init__(self):
        self.modality = self.tgt
        if isinstance(self.src, (list, tuple)):
            self.src = ",".join(parse_list(self.src))
        if isinstance(self.src_ckpt, (list, tuple)):
            self.src_ckpt = ",".join(parse_list(self.src_ckpt))
        if self.src_weights is not None:
            try:
                self.src_weights = parse_list(self.src_weights, float)
            except ValueError:
                raise TrainingError(f"--src-weights {self.src_weights}: give numbers, comma-separated, one per "
                                    "--src stream (e.g. 1,0.5)") from None
        if isinstance(self.misalign, dict):
            self.misalign = format_misalign(self.misalign) or None
        super().__post_init__()  # after the conversions above: the values checked are the ones used

    def sources(self) -> list[str]:
        """The source streams, in order."""
        return parse_list(self.src)

    def source_weights(self) -> list[float]:
        """One weight per source (default 1 each)."""
        return list(self.src_weights) if self.src_weights is not None else [1.0] * len(self.sources())

    def source_ckpts(self) -> list[str | None]:
        """One checkpoint (or None: find it under ``runs``) per source."""
        ck = parse_list(self.src_ckpt)
        return ck if ck else [None] * len(self.sources())

    def explicit_split(self) -> bool:
        return any(v not in (None, [], ()) for v in (self.split, self.split_seed, self.val_frac, self.test_frac, self.block_s,
                                                     self.guard_s, self.test_subjects, self.fold, self.folds,
                                                     self.ood_val))


#: training settings an experiment's ``[train]`` table may set (the rest are per cell)
EXPERIMENT_TRAIN_KEYS = experiment_keys(TransferConfig)
