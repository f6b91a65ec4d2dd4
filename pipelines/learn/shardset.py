"""The window index of a shards directory (:class:`ShardSet`): every window's recording, subject,
time span and class index.

It checks the encoding versions and that the streams asked for exist with the manifest's shapes
(schemas/shard.md), and reads only ``/windows`` and the stream attributes, never the samples:
:mod:`pipelines.learn.data` reads those. A single shard file works too (its manifest is derived,
:func:`manifest_of_shard`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from pipelines.core.errors import ShardError
from pipelines.shards.format import (FEATURE_DATASETS, SHARD_TYPE, STREAM_TYPE, WINDOWS_TYPE, as_str, check_encoding,
                                     read_manifest)


@dataclass
class Recording:
    """One shard: its windows (time spans, labels as class indices; -1 for a class the model lacks
    and for an unlabelled window, label "")."""

    recording_id: str
    subject: str
    session: str
    path: Path
    start_s: np.ndarray
    end_s: np.ndarray
    y: np.ndarray
    labels: np.ndarray


class ShardSet:
    """The windows of a shards directory, for the ``streams`` asked for.

    Global window ids run over recordings in manifest order, then windows in time order;
    ``rec[g]``, ``win[g]``, ``y[g]``, ``start_s[g]``, ``end_s[g]``, ``subject_of(g)`` describe window g.

    ``classes``: the class vocabulary to index labels with (default: the manifest's). Labels not in
    it raise a :class:`ShardError` unless ``unknown_labels="ignore"`` (they get ``y = -1``).
    """

    def __init__(self, data_dir: str | Path, streams: list[str], classes: list[str] | None = None,
                 unknown_labels: str = "error"):
        self.data_dir = Path(data_dir)
        if self.data_dir.is_file():  # one shard file, no manifest
            self.manifest = manifest_of_shard(self.data_dir)
            self.data_dir = self.data_dir.parent
        else:
            self.manifest = read_manifest(self.data_dir)
        self.classes = list(classes) if classes is not None else list(self.manifest["classes"])
        self.settings = dict(self.manifest.get("settings", {}))
        avail = self.manifest.get("streams", {})
        for s in streams:
            if s not in avail:
                raise ShardError(f"{self.data_dir}: stream '{s}' is not in these shards (they hold: "
                                 f"{', '.join(sorted(avail)) or 'none'}); pick one of those, or preprocess "
                                 f"the recordings with that stream")
        self.streams = list(streams)
        self.stream_info = {s: dict(avail[s]) for s in streams}
        cls_index = {c: i for i, c in enumerate(self.classes)}
        self.recordings: list[Recording] = []
        unknown: dict[str, int] = {}
        for entry in self.manifest.get("shards", []):
            path = self.data_dir / entry["file"]
            if not path.is_file():
                raise ShardError(f"{path}: listed in manifest.json but missing; rebuild the manifest with "
                                 f"`dcat manifest {self.data_dir}`")
            with h5py.File(path, "r") as f:
                check_encoding(f, SHARD_TYPE, str(path))
                if "windows" not in f:
                    raise ShardError(f"{path}: no /windows group (re-create it with `dcat preprocess`)")
                w = f["windows"]
                check_encoding(w, WINDOWS_TYPE, f"{path}:/windows")
                start = w["start_s"][:].astype(np.float64)
                end = w["end_s"][:].astype(np.float64)
                labels = np.array([as_str(x) for x in w["label"][:]], dtype=object)
                for s in streams:
                    self._check_stream(f, path, s)
                rid = as_str(f.attrs.get("recording_id", entry.get("recording_id", path.stem)))
                subj = as_str(f.attrs.get("subject", entry.get("subject", "")))
                sess = as_str(f.attrs.get("session", ""))
            y = np.array([cls_index.get(lab, -1) for lab in labels], dtype=np.int64)
            for lab in labels[y < 0]:
                if lab != "":  # "": an unlabelled window (preprocessed with --labels ignore)
                    unknown[lab] = unknown.get(lab, 0) + 1
            self.recordings.append(Recording(rid, subj, sess, path, start, end, y, labels))
        if unknown and unknown_labels == "error":
            raise ShardError(f"{self.data_dir}: labels {sorted(unknown)} are not among the model's classes "
                             f"{self.classes}; evaluate on shards with the same classes, or retrain")
        n = [len(r.start_s) for r in self.recordings]
        self.rec = np.repeat(np.arange(len(n)), n).astype(np.int64)
        self.win = np.concatenate([np.arange(k) for k in n]).astype(np.int64) if n else np.zeros(0, np.int64)
        self.y = np.concatenate([r.y for r in self.recordings]) if n else np.zeros(0, np.int64)
        self.start_s = np.concatenate([r.start_s for r in self.recordings]) if n else np.zeros(0)
        self.end_s = np.concatenate([r.end_s for r in self.recordings]) if n else np.zeros(0)
        self.offsets = np.concatenate([[0], np.cumsum(n)]).astype(np.int64)

    def _check_stream(self, f, path, s):
        if "streams" not in f or s not in f["streams"]:
            raise ShardError(f"{path}: stream '{s}' is missing from this shard although the manifest lists "
                             f"it; rebuild the manifest with `dcat manifest {self.data_dir}`")
        g = f["streams"][s]
        check_encoding(g, STREAM_TYPE, f"{path}:/streams/{s}")
        kind = as_str(g.attrs.get("kind", ""))
        arr = FEATURE_DATASETS.get(kind)
        if arr is None or arr not in g or "window_start" not in g:
            raise ShardError(f"{path}:/streams/{s}: kind '{kind}' without its arrays "
                             f"('{arr}', 'window_start'); re-create the shard with `dcat preprocess`")
        per_window = [int(g.attrs.get("samples_per_window", 0)), *g[arr].shape[1:]]
        want = list(self.stream_info[s].get("shape", per_window))
        if per_window != want:
            raise ShardError(f"{path}:/streams/{s}/{arr}: per-window shape {per_window} differs "
                             f"from the manifest's {want}; shards of one directory must share settings "
                             f"(re-run `dcat preprocess` on all recordings with the same options)")
        n = int(f.attrs.get("n_windows", len(f["windows"]["start_s"])))
        if g["window_start"].shape != (n,):
            raise ShardError(f"{path}:/streams/{s}/window_start: {g['window_start'].shape[0]} entries for {n} "
                             "windows; re-create the shard with `dcat preprocess`")
        self.stream_info[s].setdefault("kind", kind)

    def __len__(self) -> int:
        return len(self.rec)

    def kind(self, stream: str) -> str:
        return self.stream_info[stream]["kind"]

    def shape(self, stream: str) -> list[int]:
        return list(self.stream_info[stream]["shape"])

    def subject_of(self, g) -> np.ndarray:
        subj = np.array([r.subject for r in self.recordings], dtype=object)
        return subj[self.rec[np.asarray(g)]]

    def ids_of_recording(self, i: int) -> np.ndarray:
        return np.arange(self.offsets[i], self.offsets[i + 1])


def manifest_of_shard(path: Path) -> dict:
    """The manifest of one shard file, for using a shard without its directory."""
    from pipelines.shards.manifest import manifest_from_files

    path = Path(path)
    try:
        return manifest_from_files([path])
    except OSError as e:
        raise ShardError(f"{path}: not an HDF5 shard ({e})") from e


__all__ = ["Recording", "ShardSet", "manifest_of_shard"]
