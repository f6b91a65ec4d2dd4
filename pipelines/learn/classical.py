"""The classical reference of a stream (method ``features-rf``): simple statistics of each window and
a random forest (scikit-learn), trained and scored on exactly the split ``dcat pretrain`` makes.

It answers "is the stream's deep model competitive?" next to dcat's own numbers:

- the split comes from the same machinery (:func:`pipelines.learn.splits.make_split` with
  ``cfg.split_config()``, or an existing ``split.json``), so for one seed and split setting the
  forest sees the train/val/test windows a ``dcat pretrain`` run sees; it is saved as ``split.json``
  in the run folder;
- the windows are read with the training reader (:class:`pipelines.learn.data.BlockDataset`);
- the scores come from :func:`pipelines.learn.metrics.classification_metrics`, the function
  ``dcat evaluate`` uses.

Features per window (:func:`window_features`), all computed from the arrays a shard stores:

- imu ``[T, C]``: per channel mean, std, min, max, 10/25/50/75/90th percentiles, energy (mean of
  squares) and mean absolute first difference (:data:`STATS`);
- audio (log-mel ``[F, M]``): per mel band the mean and std over the frames, plus the statistics
  above of the frame's mean over the bands (loudness over time);
- video ``[T, H, W, 3]`` (frames subsampled as training does, ``video_frames``): per RGB channel
  the statistics above over all pixels and frames (the "first difference" is the mean absolute
  difference between consecutive kept frames, i.e. motion energy), plus the channel means of a
  4 x 4 grid of image cells.

The forest: ``n_estimators`` trees, ``random_state = seed``, ``n_jobs = 1`` (deterministic given the
seed, whatever the machine). Validation is scored only for the record: the forest has no epoch or
setting to choose. Imports numpy, torch (through the reader) and scikit-learn (when fitting).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from pipelines import __version__
from pipelines.core.errors import RunDirError, ShardError, TrainingError
from pipelines.core.io import atomic_write_text, to_json
from pipelines.learn.data import BlockDataset, ShardSet
from pipelines.learn.metrics import classification_metrics
from pipelines.learn.splits import (
    PARTS,
    apply_split,
    load_split,
    make_split,
    save_split,
)

METHOD = "features-rf"
RESULT_FILE = "features-rf.json"
FEATURE_SET = "window-stats-v1"
DEFAULT_TREES = 200
PERCENTILES = (10, 25, 50, 75, 90)
#: the statistics of one series (over the window's time axis), in this order
STATS = ("mean", "std", "min", "max", *(f"p{q}" for q in PERCENTILES), "energy", "mad")
GRID = 4


def series_stats(x: np.ndarray) -> np.ndarray:
    """``x`` [N, T, C] -> [N, C, len(STATS)]: each channel's :data:`STATS` over the T axis ("mad":
    mean absolute first difference along T, 0 for T = 1)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3 or x.shape[1] == 0:
        raise ValueError(f"series_stats needs [windows, time, channels] with time > 0, got shape {x.shape}")
    q = np.percentile(x, PERCENTILES, axis=1)  # [5, N, C]
    mad = np.abs(np.diff(x, axis=1)).mean(1) if x.shape[1] > 1 else np.zeros(x.shape[::2])
    return np.stack([x.mean(1), x.std(1), x.min(1), x.max(1), *q, (x ** 2).mean(1), mad], axis=-1)


def _named(stats: np.ndarray, channels: list[str]) -> tuple[np.ndarray, list[str]]:
    return stats.reshape(len(stats), -1), [f"{c}:{s}" for c in channels for s in STATS]


def imu_features(x: np.ndarray, channels: list[str]) -> tuple[np.ndarray, list[str]]:
    """[N, T, C] raw IMU windows -> ([N, C * 11] features, names)."""
    return _named(series_stats(x), channels)


def audio_features(x: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """[N, F, M] log-mel windows -> per band mean and std, then the stats of the band-mean series."""
    x = np.asarray(x, dtype=np.float64)
    m = x.shape[2]
    bands = np.concatenate([x.mean(1), x.std(1)], axis=1)
    loud, loud_names = _named(series_stats(x.mean(2, keepdims=True)), ["mel_mean"])
    names = [f"mel{j}:mean" for j in range(m)] + [f"mel{j}:std" for j in range(m)] + loud_names
    return np.concatenate([bands, loud], axis=1), names


def video_features(x: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """[N, T, H, W, 3] uint8 windows -> per RGB channel stats over pixels and frames (motion energy
    as "mad"), plus the channel means of a GRID x GRID grid of cells."""
    x = np.asarray(x, dtype=np.float32)
    n, t, h, w, c = x.shape
    rgb = "rgb" if c == 3 else [f"c{i}" for i in range(c)]
    flat = x.reshape(n, t * h * w, c)
    q = np.percentile(flat, PERCENTILES, axis=1)
    motion = np.abs(np.diff(x, axis=1)).mean((1, 2, 3)) if t > 1 else np.zeros((n, c), np.float32)
    st = np.stack([flat.mean(1), flat.std(1), flat.min(1), flat.max(1), *q, (flat.astype(np.float64) ** 2).mean(1),
                   motion], axis=-1)
    feats, names = _named(st, [f"video_{ch}" for ch in rgb])
    hs, ws = np.array_split(np.arange(h), GRID), np.array_split(np.arange(w), GRID)
    cells, cell_names = [], []
    for i, hi in enumerate(hs):
        for j, wj in enumerate(ws):
            cells.append(x[:, :, hi[0]:hi[-1] + 1, wj[0]:wj[-1] + 1].mean((1, 2, 3)))
            cell_names += [f"cell{i}{j}_{ch}:mean" for ch in rgb]
    return np.concatenate([feats, np.concatenate(cells, axis=1)], axis=1), names + cell_names


def window_features(kind: str, x: np.ndarray, channels: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Features of a batch of windows of one stream kind (as a shard stores them): ([N, K], K names)."""
    if kind == "imu":
        chans = list(channels) if channels else [f"ch{i}" for i in range(np.shape(x)[-1])]
        return imu_features(x, chans)
    if kind == "audio":
        return audio_features(x)
    if kind == "video":
        return video_features(x)
    raise TrainingError(f"{METHOD}: no window features for stream kind '{kind}' (known: imu, audio, video)")


def stream_features(shards: ShardSet, stream: str, ids: np.ndarray, video_frames: int | None = None,
                    batch_size: int = 64) -> tuple[np.ndarray, list[str]]:
    """Features of windows ``ids`` of ``stream`` (rows in the order of ``ids``), read block-wise by
    the training reader; a non-finite feature raises a ShardError naming the recording."""
    kind = shards.kind(stream)
    channels = shards.stream_info[stream].get("channels")
    ds = BlockDataset(shards, ids, [stream], batch_size, frames={stream: video_frames or None})
    out: np.ndarray | None = None
    names: list[str] = []
    try:
        for batch in ds:
            f, names = window_features(kind, batch[stream].numpy(), channels)
            pos = batch["idx"].numpy()
            if out is None:
                out = np.empty((len(ids), f.shape[1]), dtype=np.float64)
            out[pos] = f
    finally:
        ds.close()
    if out is None:
        return np.zeros((0, 0)), names
    bad = ~np.isfinite(out).all(1)
    if bad.any():
        g = int(np.asarray(ids)[np.flatnonzero(bad)[0]])
        rec = shards.recordings[int(shards.rec[g])]
        raise ShardError(f"{rec.recording_id}: {rec.path}: stream '{stream}' window {int(shards.win[g])} "
                         f"({shards.start_s[g]:g}-{shards.end_s[g]:g} s) has non-finite samples "
                         f"({int(bad.sum())} such windows); re-create the shard with `dcat preprocess`")
    return out, names


def default_out(cfg) -> Path:
    """``cfg.out``, else ``<runs>/<modality>-features-rf-<split tag>``."""
    return Path(cfg.out) if cfg.out else Path(cfg.runs) / f"{cfg.modality}-{METHOD}-{cfg.split_config().tag()}"


def _split(shards: ShardSet, cfg, split_from: str | Path | None) -> dict:
    if split_from is None:
        return make_split(shards, cfg.split_config())
    p = Path(split_from)
    return load_split(p / "split.json" if p.is_dir() else p)


def _part_scores(shards: ShardSet, ids: np.ndarray, y: np.ndarray, pred: np.ndarray, per_subject: bool) -> dict:
    if len(ids) == 0:
        return {"macro_f1": None, "accuracy": None, "n_windows": 0, "subjects": []}
    met = classification_metrics(y, pred, shards.classes)
    subj = shards.subject_of(ids)
    out = {"macro_f1": met["macro_f1"], "accuracy": met["accuracy"], "n_windows": met["n_windows"],
           "subjects": sorted(set(subj.tolist()))}
    if per_subject:
        out["per_subject"] = {}
        for s in out["subjects"]:
            m = subj == s
            ms = classification_metrics(y[m], pred[m], shards.classes)
            out["per_subject"][s] = {"macro_f1": ms["macro_f1"], "accuracy": ms["accuracy"],
                                     "n_windows": ms["n_windows"]}
        out["confusion"] = met["confusion"]
    return out


def fit_features_rf(cfg, n_estimators: int = DEFAULT_TREES, split_from: str | Path | None = None) -> dict:
    """Fit the ``features-rf`` reference of stream ``cfg.modality`` on the training part of the split
    ``cfg`` describes (a :class:`pipelines.learn.config.TrainConfig`: ``data``, ``modality``, the split
    options, ``seed``/``split_seed``, ``video_frames``, ``out``/``runs``, ``overwrite``/``resume``), or of
    the ``split.json`` in ``split_from`` (a run folder or the file); score it on test, val and train.

    Writes ``split.json`` and ``features-rf.json`` (this result) into the run folder and returns::

        {"method": "features-rf", "stage": "features-rf", "stream", "kind", "run_dir", "split_mode",
         "classes", "n_windows": {part: n},
         "test"|"val"|"train": {"macro_f1", "accuracy", "n_windows", "subjects"}
                               (test also "per_subject" and "confusion"; an empty part: None scores),
         "settings": {"n_estimators", "features", "feature_names", "n_features", "seed", ...},
         "seconds", "tool_version"}
    """
    from sklearn.ensemble import RandomForestClassifier

    t0 = time.perf_counter()
    if n_estimators < 1:
        raise TrainingError(f"{METHOD}: n_estimators={n_estimators}: give at least one tree")
    out = default_out(cfg)
    res_path = out / RESULT_FILE
    if res_path.is_file() and not (getattr(cfg, "overwrite", False) or getattr(cfg, "resume", False)):
        raise RunDirError(f"{out}: holds a {METHOD} result ({RESULT_FILE}); replace it with --overwrite or "
                          "choose another --out")
    shards = ShardSet(cfg.data, [cfg.modality])
    split = _split(shards, cfg, split_from)
    ids = apply_split(shards, split)
    if len(ids["train"]) == 0:
        raise TrainingError(f"{cfg.data}: the split leaves no training windows for {METHOD}")
    frames = cfg.video_frames if shards.kind(cfg.modality) == "video" else None
    feats, names = {}, []
    for part in PARTS:
        feats[part], nm = stream_features(shards, cfg.modality, ids[part], frames)
        names = names or nm
    rf = RandomForestClassifier(n_estimators=int(n_estimators), max_features="sqrt", random_state=int(cfg.seed),
                                n_jobs=1)
    rf.fit(feats["train"], shards.y[ids["train"]])
    result = {"method": METHOD, "stage": METHOD, "stream": cfg.modality, "kind": shards.kind(cfg.modality),
              "run_dir": str(out), "data": str(cfg.data), "split_mode": split.get("mode"),
              "classes": list(shards.classes), "n_windows": {k: len(v) for k, v in ids.items()}}
    for part in ("test", "val", "train"):
        p_ids = ids[part]
        pred = rf.predict(feats[part]) if len(p_ids) else np.zeros(0, np.int64)
        result[part] = _part_scores(shards, p_ids, shards.y[p_ids], pred, per_subject=part == "test")
    result["settings"] = {"n_estimators": int(n_estimators), "features": FEATURE_SET, "n_features": len(names),
                          "feature_names": names, "seed": int(cfg.seed), "max_features": "sqrt", "n_jobs": 1,
                          "video_frames": frames, "split": split.get("config")}
    result.update(seconds=time.perf_counter() - t0, tool_version=__version__)
    out.mkdir(parents=True, exist_ok=True)
    save_split(out / "split.json", split)
    atomic_write_text(res_path, to_json(result, indent=1))
    return result


__all__ = [
    "METHOD",
    "RESULT_FILE",
    "STATS",
    "default_out",
    "fit_features_rf",
    "series_stats",
    "stream_features",
    "window_features",
]
