"""The settings of an experiment: ``ExperimentConfig`` (what a SPEC.toml or the options of ``dcat
experiment`` may say), reading a spec, merging options over it, and checking the result before any
cell is built.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from pipelines.core.bounded import BoundedInputError, load_toml_file
from pipelines.core.errors import DcatError, TrainingError
from pipelines.core.io import parse_list
from pipelines.core.options import check_options, opt, option_problem
from pipelines.learn.config import EXPERIMENT_TRAIN_KEYS, TransferConfig

SPLITS = ("id", "ood", "official")
#: the classical reference: window statistics + a random forest (``pipelines.learn.classical``)
REFERENCE_METHODS = ("features-rf",)
DEFAULT_METHODS = ("dcat", "logit-kd", "feature-kd", "features-rf")
#: the null row's baseline is trained with seed ``seed + NULL_SEED_OFFSET`` (same split)
NULL_SEED_OFFSET = 1000
#: training settings an experiment may set (``[train]`` in the spec); the rest are per cell
TRAIN_KEYS = EXPERIMENT_TRAIN_KEYS
#: a SPEC.toml larger than this is refused unread (a spec is a few hundred bytes)
MAX_SPEC_BYTES = 256 * 1024


class ExperimentError(DcatError):
    """An experiment spec or grid that cannot run."""


def _o(default, help, items=None, **kw):
    """An experiment option: on the command line a list is one comma-separated value of ``items``
    (:func:`parse_options`), and every option defaults to "not given" there, so a spec's value stands."""
    if isinstance(default, list):
        return opt(help=help, items=items, cli_type=str, default_factory=lambda: list(default), **kw)
    return opt(default, help, **kw)


@dataclass
class ExperimentConfig:
    """Settings of ``dcat experiment`` (a SPEC.toml sets the same names; ``[train]`` holds training
    settings passed to every run, e.g. ``epochs``, ``d``, ``lr``).

    data: shards directory, or raw: a raw dataset preprocessed into ``<out>/shards`` (default
    preprocessing settings; ``align``: ``meta`` or ``estimate``). pairs: ``"video->imu"``, several sources ``"video+audio->imu"``.
    methods: transfer methods besides the no-transfer baseline (always run), and ``features-rf``
    (the classical reference). lambdas, mcma: D-CAT's grid. splits: ``id``, ``ood``. folds: OOD
    subject folds (default: one per subject, at most 5); id_folds: in-distribution time-block folds.
    split_seed: the seed of every split (the same for every training seed, so the seeds of a fold
    test the same windows). seeds: training seeds. null: also train each target's baseline with
    seed + 1000 (the null row). shifts: misalignment magnitudes in seconds (each run at + and -) of
    ``shift_stream`` (default: the pair's target), D-CAT at ``shift_lambda`` with MCMA on; empty: no
    misalignment study. baseline_lambda: weight of the logit-/feature-KD term; temperature: logit
    KD's T. jobs: cells at once (0: one per CPU core / threads, 1 on a GPU); threads per cell; device.
    """

    out: str = _o("experiments/exp", "experiment folder: runs/, results.csv, results.md, plots/ (default "
                  "experiments/exp; --quick: experiments/quick)")
    data: str | None = _o(None, "shards directory to run on")
    raw: str | None = _o(None, "or a raw dataset: preprocessed into <out>/shards first (default preprocessing "
                         "settings, with --align)")
    align: str = _o("meta", "how a raw dataset's streams are aligned when preprocessed: `meta` (default: the "
                    "clock offsets of meta.json; lags estimated and reported, not applied) or `estimate` (also "
                    "apply reliable lag estimates; --quick does, as half of sample_data/ declares no offsets)",
                    choices=("meta", "estimate"))
    pairs: list = _o(["video->imu"], "comma-separated SOURCE->TARGET pairs (quote them in the shell): "
                     "'video->imu,audio->imu'; several sources: 'video+audio->imu' (default video->imu)", items=str,
                     unique=True)
    methods: list = _o(list(DEFAULT_METHODS), "transfer methods besides the no-transfer baseline (which always "
                       "runs): dcat,logit-kd,feature-kd, and features-rf (the classical reference: window "
                       "statistics + a random forest on the target stream) (default all four)", items=str,
                       unique=True, choices=("dcat", "logit-kd", "feature-kd", *REFERENCE_METHODS))
    lambdas: list = _o([0.1, 1.0, 10.0], "D-CAT lambdas (default 0.1,1,10)", items=float, ge=0,
                      unique=True)
    mcma: list = _o([True, False], "D-CAT with MCMA on, off, or on,off (default)", items=bool, unique=True)
    splits: list = _o(["id", "ood"], "`id`, `ood` or `id,ood` (default); `official`: the dataset's own protocol (`dcat import`; one test set per seed, `[train] protocol` picks one)", items=str, unique=True,
                      choices=SPLITS)
    folds: int | None = _o(None, "out-of-distribution subject folds; every fold runs (default: one per subject, "
                           "at most 5)", ge=2)
    id_folds: int = _o(5, "in-distribution folds: each subject's time blocks in that many groups, each tested "
                       "once (default 5; 1: one split with --test-frac of the blocks as test)", ge=1,
                       why="give 1 (one split by test_frac) or more folds")
    split_seed: int = _o(0, "seed of every split (default 0): the same for every training seed, so the seeds of a "
                         "fold are trained and tested on the same windows", ge=0)
    seeds: list = _o([0, 1, 2], "training seeds (default 0,1,2): initialisation and data order; the seeds of a "
                     "fold are averaged, then the folds (test sets) are the replicates", items=int,
                     ge=0, unique=True)
    null: bool = _o(True, "the null row: train each target's baseline again with seed + 1000 and compare it with "
                    "the baseline like a method (default on): the noise floor of every difference",
                    flag="--null/--no-null")
    shifts: list = _o([0.5, 1.0], "misalignment study: shift magnitudes in seconds, each run at + and - (default "
                      "0.5,1; '' for none); D-CAT at --shift-lambda, MCMA on", items=float,
                      unique=True, gt=0)
    shift_stream: str | None = _o(None, "the stream shifted in the misalignment study (default: the pair's target)")
    shift_lambda: float = _o(1.0, "D-CAT lambda of the misalignment study (default 1)", ge=0)
    source_label_fraction: float | None = _o(None, "label fraction of the source runs (streams that are no target): "
                                             "default the [train] label_fraction; 1: the sources see every training "
                                             "label while the targets see label_fraction (a strong camera model, "
                                             "as a pretrained video model would be)", gt=0, le=1)
    shared_sources: bool = _o(False, "train each source stream (a stream that is no target) once per fold, with the "
                              "first seed, and share it among the fold's seeds (the seeds then vary the targets only; "
                              "cheaper)", flag="--shared-sources/--own-sources")
    baseline_lambda: float = _o(1.0, "weight of the logit-KD / feature-KD term (default 1)", ge=0)
    temperature: float = _o(4.0, "logit-KD temperature (default 4)", gt=0)
    train: dict = opt(help="training settings passed to every run (a spec's [train] table)", cli=False,
                      default_factory=dict)
    jobs: int = _o(0, "cells run at once (0, default: one per CPU core divided by --threads; 1 on a GPU)", short="-j", ge=0)
    threads: int = _o(1, "torch threads per cell (default 1: a cell's numbers do not depend on --jobs)", ge=1)
    device: str = _o("cpu", "cpu (default), cuda, auto")
    title: str | None = _o(None, "title of results.md")
    overwrite: bool = opt(False, "retrain cells whose saved settings differ from the spec's", cli=False)

    def __post_init__(self):
        check_options(self, ExperimentError, spelling="key")  # types and ranges, as each field declares them
        unknown = sorted(str(k) for k in self.train if k not in TRAIN_KEYS)
        if unknown:
            raise ExperimentError(f"train.{', train.'.join(unknown)}: not a training setting an experiment can set"
                                  f"{_did_you_mean(unknown, TRAIN_KEYS)} (known: {', '.join(TRAIN_KEYS)})")
        try:  # the [train] values: the checks of dcat pretrain/transfer's own options
            TransferConfig(**self.train)
        except TrainingError as e:
            key = getattr(e, "option", None)
            if key is None:
                raise ExperimentError(f"train: {e}") from None
            err = ExperimentError(f"train.{option_problem(TransferConfig, key, e.value, 'key')}")  # TOML's dotted key
            err.flag_message = str(e)
            raise err from None

    @classmethod
    def from_dict(cls, d: dict, where: str = "spec"):
        """The settings in ``d`` (a spec's keys); ``where`` names them in messages (a spec's path, or
        ``options``: the command line, whose messages name flags)."""
        names = [f.name for f in fields(cls)]
        unknown = sorted(str(k) for k in d if k not in names)
        if unknown:
            raise ExperimentError(f"{where}: unknown setting(s) {', '.join(unknown)}{_did_you_mean(unknown, names)}; "
                                  f"known: {', '.join(sorted(names))}")
        try:
            return cls(**d)
        except ExperimentError as e:
            if where != "options":
                raise ExperimentError(f"{where}: {e}") from None
            key = getattr(e, "option", None)  # the command line's values: name the flags
            raise ExperimentError(option_problem(cls, key, e.value) if key is not None
                                  else getattr(e, "flag_message", str(e))) from None

    def to_dict(self) -> dict:
        return asdict(self)


def _did_you_mean(unknown: list[str], known) -> str:
    """``; did you mean lambdas?`` for the first unknown key close to a known one, else ``""``."""
    for k in unknown:
        close = difflib.get_close_matches(k, list(known), n=1, cutoff=0.6)
        if close:
            return f"; did you mean {close[0]} (not {k})?"
    return ""


def quick_config(**over) -> ExperimentConfig:
    """``dcat experiment --quick``: a reduced grid on the bundled sample data (see README), sized to
    finish in well under 15 minutes on 2 CPU cores: 3 in-distribution time-block folds and 5 subject
    folds (8 units, one training seed; the null row is the second seed), D-CAT at lambda 0.1/1/10
    with MCMA on/off, logit KD, feature KD, the classical reference, and the target shifted by +-1 s."""
    base = dict(out="experiments/quick", raw="sample_data", pairs=["video->imu"], methods=list(DEFAULT_METHODS),
                lambdas=[0.1, 1.0, 10.0], mcma=[True, False], splits=["id", "ood"], id_folds=3, folds=5, seeds=[0],
                shifts=[1.0], null=True, align="estimate", train={"epochs": 12, "video_frames": 4},
                title="dcat experiment --quick (sample_data)")
    base.update(over)
    return ExperimentConfig(**base)


def load_spec(path: str | Path) -> dict:
    """Read a SPEC.toml into a dict of :class:`ExperimentConfig` fields."""
    p = Path(path)
    if not p.is_file():
        raise ExperimentError(f"{p}: no such spec file")
    try:
        d = load_toml_file(p, max_bytes=MAX_SPEC_BYTES)
    except BoundedInputError as e:
        raise ExperimentError(str(e)) from None
    if "experiment" in d and isinstance(d["experiment"], dict):  # an [experiment] table is accepted too
        d = {**{k: v for k, v in d.items() if k != "experiment"}, **d["experiment"]}
    ExperimentConfig.from_dict(d, str(p))  # names checked here, values in check_config
    return d


def _on_off(x: str) -> bool:
    if x.lower() not in ("on", "off", "true", "false"):
        raise ValueError(x)
    return x.lower() in ("on", "true")


def parse_options(options: dict) -> dict:
    """Command-line values (strings, None: not given) -> :class:`ExperimentConfig` values: each
    list option's comma-separated string becomes a list of its ``items`` type (MCMA: on/off)."""
    kinds = {f.name: f.metadata.get("items") for f in fields(ExperimentConfig)}
    out = {}
    for k, v in options.items():
        conv = kinds.get(k)
        if v is None or conv is None:
            out[k] = v
            continue
        try:
            out[k] = parse_list(v, _on_off if conv is bool else conv)
        except ValueError:
            if conv is bool:
                raise ExperimentError(f"--mcma {v}: write on, off or on,off") from None
            raise ExperimentError(f"'{v}': expected a comma-separated list of "
                                  f"{'numbers' if conv is not str else 'names'}") from None
    return out


def merge_config(spec: dict | None, options: dict, train: dict | None = None, quick: bool = False,
                 overwrite: bool = False, where: str = "options") -> ExperimentConfig:
    """The settings of one experiment: a loaded SPEC.toml (:func:`load_spec`; None: no spec) or the
    ``quick`` grid, with ``options`` (:class:`ExperimentConfig` fields) over it. An option that is None
    keeps the spec's value; giving ``data`` drops the spec's ``raw`` and the other way round; ``train``
    entries (None: not given) update the spec's ``[train]`` table. ``where`` names the settings' origin
    in error messages (the spec's path)."""
    over = {k: v for k, v in options.items() if v is not None}
    data, raw = over.get("data"), over.get("raw")
    if data:
        over["raw"] = None
    if raw:
        over["data"] = None
    d0 = dict(spec or {})
    train = {**(d0.pop("train", {}) or {}), **{k: v for k, v in (train or {}).items() if v is not None}}
    if quick:
        if spec is not None:
            raise ExperimentError("--quick is its own spec: give either SPEC.toml or --quick")
        q = quick_config()
        return quick_config(**over, train={**q.train, **train}, overwrite=overwrite)
    cfg = ExperimentConfig.from_dict({**d0, **over, "train": train, "overwrite": overwrite}, where)
    try:  # the grid as a whole, before any work: a message naming the spec
        check_config(cfg)
    except ExperimentError as e:
        raise ExperimentError(f"{where}: {e}" if where != "options" else str(e)) from None
    return cfg


def parse_pair(p: str) -> tuple[list[str], str]:
    """``"video+audio->imu"`` -> (["video", "audio"], "imu")."""
    if "->" not in str(p):
        raise ExperimentError(f"pair '{p}': write SOURCE->TARGET, e.g. video->imu (several sources: video+audio->imu)")
    a, b = str(p).split("->", 1)
    srcs = [s.strip() for s in a.split("+") if s.strip()]
    tgt = b.strip()
    if not srcs or not tgt or tgt in srcs:
        raise ExperimentError(f"pair '{p}': needs at least one source and a different target")
    return srcs, tgt


def check_config(cfg: ExperimentConfig) -> None:
    """Refuse settings that cannot make a grid (ExperimentError naming the setting); each value's
    type and range is checked when the config is made (``ExperimentConfig.__post_init__``)."""
    if not (cfg.data or cfg.raw) or (cfg.data and cfg.raw):
        raise ExperimentError("give the data: either data = SHARDS_DIR or raw = RAW_DIR (preprocessed into <out>/shards)")
    if not cfg.pairs:
        raise ExperimentError("pairs: name at least one SOURCE->TARGET pair, e.g. video->imu")
    for p in cfg.pairs:
        parse_pair(p)
    if not cfg.splits:
        raise ExperimentError(f"splits {cfg.splits}: use id and/or ood")
    if not cfg.seeds:
        raise ExperimentError("seeds: give at least one seed")
    clash = sorted(s for s in cfg.seeds if s + NULL_SEED_OFFSET in cfg.seeds)
    if cfg.null and clash:
        raise ExperimentError(f"seeds: the null row trains seed {clash[0]} + {NULL_SEED_OFFSET}, which is also a seed "
                              f"of the grid; drop seed {clash[0] + NULL_SEED_OFFSET} (or turn the null off: --no-null)")
    if "dcat" in cfg.methods and (not cfg.lambdas or not cfg.mcma):
        raise ExperimentError("D-CAT needs at least one lambda and one MCMA setting (mcma = [true, false])")
