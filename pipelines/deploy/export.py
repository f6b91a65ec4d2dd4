"""`dcat export`: a run's target model alone, as one TorchScript or ONNX file plus a JSON sidecar.

The exported module is :class:`TargetLogits`: the checkpoint's :class:`DcatModel` in eval mode (its
input normalisation ``norm_in`` included, so it takes windows in the shard's units at the shard's
rate) returning only the logits ``[B, n_classes]``; the batch size is free. An audio model takes
the waveform at the preprocessing rate by default (``audio_input="waveform"``: the log-mel front end
of :mod:`pipelines.deploy.frontend` in front) or the log-mel frames as the shard stores them
(``"logmel"``); a video model keeps the checkpoint's frame subset inside (it takes every stored frame).

Only the checkpoint's ``model`` entry (the target's weights) is exported: a transfer's checkpoint
holds the source as a reference (path and hash) and training-only projections (``aux``), never
exported. After writing, the file is loaded back with its own runtime and its logits compared with
the eager model's on random windows; the largest difference is in the sidecar (``tolerance``) and an
export over :data:`TOLERANCE` is refused.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipelines import __version__
from pipelines.core.errors import DcatError
from pipelines.core.io import atomic_path, atomic_write_text, file_sha256, to_json
from pipelines.deploy.frontend import LOG_EPS, LogMel, logmel_reference
from pipelines.learn.checkpoint import load_checkpoint, model_from_checkpoint
from pipelines.learn.models.model import frame_indices

FORMATS = ("torchscript", "onnx")
AUDIO_INPUTS = ("waveform", "logmel")
SUFFIX = {"torchscript": ".pt", "onnx": ".onnx"}
#: the largest |exported - eager| logit accepted at export (float32; measured values are ~1e-6)
TOLERANCE = 1e-4
#: the same for a waveform input, against the eager model on a float64 log-mel (the front end's own error)
WAVEFORM_TOLERANCE = 1e-3
ONNX_OPSET = 18
ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")
INSTALL_HINT = "pip install 'dcat[deploy]'"
SIDECAR_FORMAT = "dcat-export"


class ExportError(DcatError):
    """A run that cannot be exported, or an export that does not reproduce the run's model."""


class TargetLogits(nn.Module):
    """``x [B, *input] -> logits [B, n_classes]``: optional front end (audio waveform), optional frame
    subset (video), then the target model (input normalisation included)."""

    def __init__(self, model: nn.Module, frontend: nn.Module | None = None, frames: np.ndarray | None = None):
        super().__init__()
        self.model = model
        self.frontend = frontend
        self.register_buffer("frame_idx", None if frames is None else torch.as_tensor(frames, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.frontend is not None:
            x = self.frontend(x)
        if self.frame_idx is not None:
            x = x.index_select(1, self.frame_idx)
        return self.model(x)["logits"]


def missing_onnx_packages() -> list[str]:
    """The packages of the ``deploy`` extra that this Python lacks."""
    return [p for p in ONNX_PACKAGES if importlib.util.find_spec(p) is None]


def _checkpoint_path(run_dir: Path, checkpoint: str) -> Path:
    if run_dir.suffix == ".pt" and run_dir.is_file():
        return run_dir
    if not run_dir.exists():
        raise ExportError(f"{run_dir}: no such run folder")
    if not run_dir.is_dir():
        raise ExportError(f"{run_dir}: not a run folder or a .pt checkpoint")
    path = run_dir / checkpoint
    if not path.is_file():
        raise ExportError(f"{run_dir}: not a run folder (no {checkpoint}); train one with `dcat pretrain` or "
                          "`dcat transfer`")
    return path


def _audio_settings(ck: dict, where: Path) -> dict:
    """The log-mel settings the audio model's shards were made with (preprocessing's, in the checkpoint)."""
    pre = ck["data"].get("preprocess") or {}
    if not all(k in pre for k in ("audio_sr", "n_fft", "hop_length", "n_mels")):
        raise ExportError(f"{where}: the checkpoint does not record the audio preprocessing settings (audio_sr, "
                          "n_fft, hop_length, n_mels), so a waveform front end cannot be built; export with "
                          "--audio-input logmel")
    s = {"sample_rate_hz": int(pre["audio_sr"]), "n_fft": int(pre["n_fft"]), "hop_length": int(pre["hop_length"]),
         "n_mels": int(pre["n_mels"]), "fmin_hz": 0.0, "fmax_hz": int(pre["audio_sr"]) / 2,
         "window": "periodic Hann", "center": False, "log": f"log(mel power + {LOG_EPS:g})",
         "mel": "Slaney (librosa filters.mel defaults)"}
    frames = int(ck["data"]["shape"][0])
    s["samples_per_window"] = int(round(float(ck["data"]["window_s"]) * s["sample_rate_hz"]))
    if 1 + (s["samples_per_window"] - s["n_fft"]) // s["hop_length"] != frames:
        raise ExportError(f"{where}: {s['samples_per_window']} samples per window do not give the model's {frames} "
                          "log-mel frames; export with --audio-input logmel")
    return s


def build_target(ck: dict, where: Path, audio_input: str = "waveform") -> tuple[TargetLogits, dict]:
    """The module to export and a description of its input (shape without batch, dtype, what it is)."""
    model = model_from_checkpoint(ck).eval()
    kind = ck["model_config"]["kind"]
    data = ck["data"]
    stored = [int(v) for v in data.get("shape") or ck["model_config"]["in_shape"]]
    inp = {"shape": stored, "dtype": "float32", "rate_hz": data.get("rate_hz")}
    frontend = frames = None
    if kind == "imu":
        inp["what"] = "IMU samples in the shard's units, time x channel (normalisation is inside)"
    elif kind == "audio" and audio_input == "waveform":
        a = _audio_settings(ck, where)
        frontend = LogMel(a["sample_rate_hz"], a["n_fft"], a["hop_length"], a["n_mels"]).eval()
        inp.update(shape=[a["samples_per_window"]], rate_hz=a["sample_rate_hz"], audio=a,
                   what="mono waveform, float32 in [-1, 1], at sample_rate_hz (log-mel front end inside)")
    elif kind == "audio":
        inp["what"] = "log-mel frames as the shard stores them, frame x mel band: log(mel power + 1e-6)"
    elif kind == "video":
        frames = frame_indices(stored[0], data.get("frames"))
        inp.update(dtype="uint8", what="RGB frames, frame x height x width x 3, uint8 (the checkpoint's "
                                       "frame subset and normalisation are inside)")
        inp["frames_used"] = None if frames is None else [int(i) for i in frames]
    else:
        raise ExportError(f"{where}: stream kind '{kind}' cannot be exported")
    return TargetLogits(model, frontend, frames).eval(), inp


def _probe(inp: dict, model: TargetLogits, n: int = 8, seed: int = 0) -> torch.Tensor:
    """Random windows of the input's kind: N(in_mean, in_std) per channel, a noisy waveform, random pixels."""
    g = torch.Generator().manual_seed(seed)
    shape = (n, *inp["shape"])
    if inp["dtype"] == "uint8":
        return torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
    if "audio" in inp:
        return 0.1 * torch.randn(shape, generator=g)
    norm = model.model.norm_in
    return norm.in_mean + norm.in_std * torch.randn(shape, generator=g)


def _reference(model: TargetLogits, x: torch.Tensor, inp: dict) -> np.ndarray:
    """The eager model's logits; a waveform goes through the float64 numpy log-mel first."""
    with torch.no_grad():
        if "audio" in inp:
            a = inp["audio"]
            mel = logmel_reference(x.numpy(), a["sample_rate_hz"], a["n_fft"], a["hop_length"], a["n_mels"])
            return model.model(torch.from_numpy(mel.astype(np.float32)))["logits"].numpy()
        return model(x).numpy()


def _write_torchscript(model: TargetLogits, example: torch.Tensor, out: Path) -> None:
    import warnings

    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit.*deprecated", category=DeprecationWarning)
        ts = torch.jit.trace(model, example, check_trace=True, check_inputs=[(example[:1],)])
        torch.jit.save(ts, str(out))


def _write_onnx(model: TargetLogits, example: torch.Tensor, out: Path) -> None:
    missing = missing_onnx_packages()
    if missing:
        raise ExportError(f"--format onnx needs {', '.join(missing)}: {INSTALL_HINT}")
    import logging
    import warnings

    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    log = logging.getLogger("torch.onnx")
    level = log.level
    log.setLevel(logging.ERROR)  # "torchvision is not installed. Skipping ..." is not the user's concern
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (example,), str(out), dynamo=True, input_names=["x"], output_names=["logits"],
                              dynamic_shapes={"x": {0: batch}}, opset_version=ONNX_OPSET, verbose=False,
                              external_data=False)
    finally:
        log.setLevel(level)


def _tensor_count(model: TargetLogits) -> dict:
    sd = model.model.state_dict()
    params = sum(p.numel() for p in model.model.parameters())
    return {"parameters": int(params), "state_tensors": len(sd),
            "state_bytes": int(sum(t.numel() * t.element_size() for t in sd.values()))}


def export_run(run_dir: str | Path, fmt: str, out: str | Path | None = None, checkpoint: str = "best.pt",
               audio_input: str = "waveform") -> dict:
    """Export a run's target model (``fmt``: torchscript or onnx) to ``out`` (default
    ``<run>/model.pt`` or ``<run>/model.onnx``) with the sidecar ``out`` with ``.json``; return the sidecar."""
    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt}: choose {' or '.join(FORMATS)}")
    if audio_input not in AUDIO_INPUTS:
        raise ExportError(f"--audio-input {audio_input}: choose {' or '.join(AUDIO_INPUTS)}")
    if fmt == "onnx" and missing_onnx_packages():
        raise ExportError(f"--format onnx needs {', '.join(missing_onnx_packages())}: {INSTALL_HINT}")
    run_dir = Path(run_dir)
    ck_path = _checkpoint_path(run_dir, checkpoint)
    ck = load_checkpoint(ck_path)
    where = ck_path
    out = Path(out) if out is not None else (ck_path.parent / f"model{SUFFIX[fmt]}")
    if out.suffix == ".json":
        raise ExportError(f"--out {out}: the sidecar takes the .json name; give the model file's name")
    if out.is_dir():
        out = out / f"model{SUFFIX[fmt]}"
    model, inp = build_target(ck, where, audio_input)
    x = _probe(inp, model)
    from pipelines.deploy.runtime import load_exported

    limit = WAVEFORM_TOLERANCE if "audio" in inp else TOLERANCE
    with atomic_path(out, suffix=SUFFIX[fmt]) as tmp:  # renamed to ``out`` only once it reproduces the model
        (_write_torchscript if fmt == "torchscript" else _write_onnx)(model, x[:2], tmp)
        got = load_exported(tmp, fmt)(x.numpy())
        diff = float(np.abs(got - _reference(model, x, inp)).max())
        if not np.isfinite(diff) or diff > limit:
            raise ExportError(f"{where}: the exported {fmt} model's logits differ from the checkpoint's by "
                              f"{diff:.3g} (> {limit:g}); nothing written")
    side = sidecar(ck, ck_path, model, inp, fmt, out, diff, limit, len(x))
    atomic_write_text(out.with_suffix(".json"), to_json(side, indent=2) + "\n")
    return side


def sidecar(ck: dict, ck_path: Path, model: TargetLogits, inp: dict, fmt: str, out: Path, diff: float,
            limit: float, n_probe: int) -> dict:
    """What a device needs to feed the exported model and read its output, and where it came from."""
    data = ck["data"]
    stream = ck.get("stream") or data.get("stream")
    kind = ck["model_config"]["kind"]
    units, units_note = stream_units(ck, waveform="audio" in inp)
    reference = ("the eager model on the float64 numpy log-mel of the same waveform" if "audio" in inp
                 else "the checkpoint's model in eval mode, float32 (eager PyTorch)")
    return {
        "format": SIDECAR_FORMAT, "version": 1, "model_file": out.name, "model_format": fmt,
        **({"onnx_opset": ONNX_OPSET} if fmt == "onnx" else {}),
        "stream": {"name": stream, "kind": kind}, "channels": data.get("channels"),
        "units": units, "units_note": units_note,
        "rate_hz": inp["rate_hz"], "window_s": data.get("window_s"), "stride_s": data.get("stride_s"),
        "input": {"name": "x", "shape": [None, *inp["shape"]], "dtype": inp["dtype"], "what": inp["what"],
                  **{k: inp[k] for k in ("audio", "frames_used") if k in inp}},
        "output": {"name": "logits", "shape": [None, len(ck["classes"])],
                   "what": "unnormalised class scores; softmax gives probabilities, argmax indexes classes"},
        "classes": list(ck["classes"]),
        "normalisation": ("inside the model: (x - in_mean) / in_std per channel with the training windows' "
                          "statistics" if kind != "video" else
                          "inside the model: x / 255, then per-RGB (x - 0.45) / 0.225"),
        "model": _tensor_count(model), "file_bytes": out.stat().st_size,
        "tolerance": {"max_abs_logit_diff": diff, "limit": limit, "windows": n_probe,
                      "inputs": "random windows (seed 0)", "reference": reference},
        "dcat_version": __version__,
        "source_run": {"run_dir": str(ck_path.parent.resolve()), "checkpoint": ck_path.name,
                       "checkpoint_sha256": file_sha256(ck_path), "stage": ck.get("stage"), "epoch": ck.get("epoch"),
                       "checkpoint_tool_version": ck.get("tool_version")},
    }


def stream_units(ck: dict, waveform: bool = False) -> tuple[dict | str | None, str]:
    """The stream's units as its shards record them (the shards the run trained on, when still there)."""
    kind = ck["model_config"]["kind"]
    if kind == "audio":
        return ("mono waveform, float32 in [-1, 1]" if waveform else "log(mel power + 1e-6)"), "fixed by preprocessing"
    if kind == "video":
        return "RGB uint8", "fixed by preprocessing"
    stream = ck.get("stream")
    data_dir = Path(str((ck.get("train_config") or {}).get("data") or ""))
    try:
        import h5py

        man = json.loads((data_dir / "manifest.json").read_text())
        with h5py.File(data_dir / man["shards"][0]["file"], "r") as f:
            raw = f[f"streams/{stream}"].attrs.get("units")
        if raw is None:
            return None, f"the shards in {data_dir} record no units"
        return json.loads(raw), f"from the shards the run trained on ({data_dir})"
    except (OSError, KeyError, IndexError, ValueError, TypeError):
        return None, f"unknown: the shards the run trained on ({data_dir}) are not readable here"
