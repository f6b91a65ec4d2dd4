"""The model side of streaming prediction: what a model reads (``StreamSpec`` from a checkpoint or a
`dcat export` sidecar), the model as a function of windows (``Predictor``: the run's checkpoint, or an
exported TorchScript / ONNX file run by ``pipelines.deploy.runtime``), and the JSON rows of windows
(``window_rows``). The stream kinds' inputs are in ``stream`` (IMU CSV) and ``stream_audio`` (PCM).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.core.errors import DcatError

KINDS = ("imu", "audio")  # the stream kinds that can be streamed


@dataclass(frozen=True)
class StreamSpec:
    """What the model reads: its stream and kind, channels (IMU, in order), rate (IMU: of the samples;
    audio: of the log-mel frames), window, stride, classes, and for audio the preprocessing's log-mel
    settings (``audio``: sample rate, n_fft, hop_length, n_mels)."""

    stream: str
    channels: tuple[str, ...]
    rate_hz: float
    window_s: float
    stride_s: float
    classes: tuple[str, ...]
    kind: str = "imu"
    audio: tuple[tuple[str, int], ...] = ()


def spec_from_checkpoint(ck: dict, where: str) -> StreamSpec:
    """The stream a checkpoint's model reads; DcatError unless it is an IMU stream with channels or an
    audio stream with its log-mel settings."""
    d = ck.get("data") or {}
    kind = d.get("kind") or ck.get("kind")
    if kind not in KINDS:
        raise DcatError(f"{where}: streaming prediction (--stream) supports IMU and audio targets; this model "
                        f"reads the {kind} stream '{ck.get('stream')}'")
    pre = d.get("preprocess") or {}
    audio = {k: pre.get(k) for k in ("audio_sr", "n_fft", "hop_length", "n_mels")} if kind == "audio" else {}
    if (not d.get("rate_hz") or not d.get("window_s") or not d.get("stride_s")
            or (kind == "imu" and not d.get("channels")) or not all(audio.values())):
        raise DcatError(f"{where}: the checkpoint does not say the {kind} settings its model reads (channels or "
                        "log-mel, rate, window and stride in its data entry); retrain with this dcat")
    return StreamSpec(stream=str(ck["stream"]), channels=tuple(d.get("channels") or ()), rate_hz=float(d["rate_hz"]),
                      window_s=float(d["window_s"]), stride_s=float(d["stride_s"]),
                      classes=tuple(ck["classes"]), kind=kind, audio=tuple((k, int(v)) for k, v in audio.items()))


@dataclass
class Window:
    """One window of the grid: its samples on the model's grid, or the reason it is skipped."""

    start_s: float
    end_s: float
    data: np.ndarray | None  # float32 model input of one window ([samples, channels]); None when skipped
    skipped: str = ""


def _export_sidecar(path: Path) -> dict | None:
    """The sidecar of a model written by `dcat export` (``<name>.json`` beside ``<name>.pt|.onnx``,
    format ``dcat-export``), or None when ``path`` is no such model (a run folder, a checkpoint)."""
    side = path.with_suffix(".json")
    if not (path.is_file() and path.suffix in (".pt", ".onnx") and side.is_file()):
        return None
    from pipelines.core.bounded import load_json_file

    meta = load_json_file(side)
    return meta if isinstance(meta, dict) and meta.get("format") == "dcat-export" else None


class Predictor:
    """A model as a function of windows: float32 [B, T, C] -> probabilities [B, classes]. ``model_path``:
    a run folder or its checkpoint (``.pt``), or a model written by `dcat export` (``model.pt`` /
    ``model.onnx`` with its ``model.json`` sidecar beside: run with ``pipelines.deploy.runtime``, no
    checkpoint needed)."""

    def __init__(self, model_path: str | Path, checkpoint: str = "best.pt", device: str = "auto", threads: int = 1):
        p = Path(model_path)
        side = _export_sidecar(p)
        self.exported = side is not None
        if side is not None:
            self._load_exported(p, side, threads)
            return
        from pipelines.learn.checkpoint import load_checkpoint, model_from_checkpoint
        from pipelines.learn.device import configure_threads, resolve_device

        ck_path = p if p.suffix == ".pt" else p / checkpoint
        ck = load_checkpoint(ck_path)
        self.spec = spec_from_checkpoint(ck, str(ck_path))
        self.device = resolve_device(device)
        configure_threads(threads, self.device)
        self.model = model_from_checkpoint(ck).to(self.device).eval()

    def _load_exported(self, path: Path, meta: dict, threads: int) -> None:
        from pipelines.deploy.runtime import load_exported

        d = {"kind": (meta.get("stream") or {}).get("kind"), "channels": meta.get("channels"),
             "rate_hz": meta.get("rate_hz"), "window_s": meta.get("window_s"), "stride_s": meta.get("stride_s")}
        self.spec = spec_from_checkpoint({"stream": (meta.get("stream") or {}).get("name"), "data": d,
                                          "classes": meta.get("classes") or []}, str(path.with_suffix(".json")))
        if self.spec.kind != "imu":
            raise DcatError(f"{path}: streaming an exported {self.spec.kind} model is not supported; stream with "
                            "the run folder (its checkpoint) instead")
        self.run = load_exported(path, threads=threads)

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        import torch

        if self.exported:
            return torch.softmax(torch.from_numpy(np.asarray(self.run(windows), np.float32)), dim=1).numpy()
        from pipelines.learn.device import autocast

        with torch.inference_mode(), autocast(self.device):
            logits = self.model(torch.from_numpy(windows).to(self.device))["logits"]
        return torch.softmax(logits.float(), dim=1).cpu().numpy()


def window_rows(windows: list[Window], predictor, classes: tuple[str, ...]) -> list[dict]:
    """One row per window, like `dcat predict`'s (start_s, end_s, pred, prob, prob_<class>), or
    ``{"start_s", "end_s", "skipped"}``; the kept windows go through the model in one batch."""
    kept = [w for w in windows if w.data is not None]
    prob = predictor(np.stack([w.data for w in kept])) if kept else np.zeros((0, len(classes)))
    by_id = {id(w): p for w, p in zip(kept, prob)}
    rows = []
    for w in windows:
        row = {"start_s": round(float(w.start_s), 6), "end_s": round(float(w.end_s), 6)}
        if w.data is None:
            row["skipped"] = w.skipped
        else:
            p = by_id[id(w)]
            c = int(p.argmax())
            row.update(pred=classes[c], prob=float(p[c]), **{f"prob_{n}": float(p[i]) for i, n in enumerate(classes)})
        rows.append(row)
    return rows


__all__ = ["KINDS", "StreamSpec", "spec_from_checkpoint", "Window", "Predictor", "window_rows"]
