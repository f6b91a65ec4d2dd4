"""The window index of a shards directory (:class:`ShardSet`): every window's recording, subject,
time span and class index.

Every shard is checked on open (:func:`pipelines.shards.check.check_shard`: the checks of `dcat
validate`, with its messages), then that the streams asked for exist with the manifest's shapes
(schemas/shard.md); it reads only ``/windows`` and the stream attributes, never the samples:
:mod:`pipelines.learn.data` reads those. A single shard file works too (its manifest is derived,
:func:`manifest_of_shard`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from pipelines.core.errors import ShardError
from pipelines.shards.check import ShardSummary, check_shard
from pipelines.shards.format import as_str, read_manifest
from pipelines.shards.manifest import shard_files
from pipelines.shards.validate import stale_manifest


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
        single = self.data_dir.is_file()
        if single:  # one shard file, no manifest
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
        if not single:
            self._check_directory()
        for entry in self.manifest.get("shards", []):
            path = self.data_dir / entry["file"]
            info = check_shard(path)  # every check `dcat validate` runs, with its messages
            with h5py.File(path, "r") as f:
                w = f["windows"]
                start = w["start_s"][:].astype(np.float64)
                end = w["end_s"][:].astype(np.float64)
                labels = np.array([as_str(x) for x in w["label"][:]], dtype=object)
            for s in streams:
                self._check_stream(info, path, s)
            rid, subj, sess = info.recording_id, info.subject, info.session
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

    def _check_directory(self) -> None:
        """Every ``*.h5`` of the directory passes the checks of `dcat validate` (in its order, so the
        first problem is the one it prints first) and the manifest lists exactly those files: a shard
        left out of a stale manifest is not silently skipped."""
        files = shard_files(self.data_dir)
        for p in files:
            check_shard(p)
        msg = stale_manifest(self.data_dir, {e["file"] for e in self.manifest.get("shards", [])},
                             {p.name for p in files})
        if msg:
            raise ShardError(msg)

    def _check_stream(self, info: ShardSummary, path: Path, s: str) -> None:
        """Stream ``s`` of a checked shard exists with the manifest's per-window shape."""
        if s not in info.streams:
            raise ShardError(f"{path}: stream '{s}' is missing from this shard although the manifest lists "
                             f"it; rebuild the manifest with `dcat manifest {self.data_dir}`")
        st = info.streams[s]
        want = list(self.stream_info[s].get("shape", st.shape))
        if st.shape != want:
            raise ShardError(f"{path}:/streams/{s}/{st.dataset}: per-window shape {st.shape} differs "
                             f"from the manifest's {want}; shards of one directory must share settings "
                             f"(re-run `dcat preprocess` on all recordings with the same options)")
        kind = self.stream_info[s].setdefault("kind", st.kind)
        if kind != st.kind:
            raise ShardError(f"{path}:/streams/{s}: kind '{st.kind}' differs from the manifest's '{kind}'; "
                             f"rebuild the manifest with `dcat manifest {self.data_dir}`")

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
