"""Checkpoints: model state, model config, class vocabulary and the data settings the model expects.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, loadable with
``torch.load(path, weights_only=True)``::

    format: "dcat-checkpoint", version: 1, tool_version
    model_config: ModelConfig as a dict          model: state_dict
    classes: [...]                               stream: name, kind
    data: {"window_s", "stride_s", "rate_hz", "shape" (per-window, as stored), "frames" (video
           frames kept, or None), "features": {n_mels, hop_length, ... (audio)}, "channels" (imu)}
    train_config: the stage's config dict        stage: "pretrain" | "transfer"
    epoch, step, best: {"val_macro_f1", "epoch"}
    optimizer, scheduler, rng, early_stop: only in last.pt (for resuming)

:func:`check_data` compares the ``data`` entry with a shards directory's manifest and raises
:class:`CheckpointError` naming the mismatch (not a shape crash deep in a convolution).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from pipelines import __version__
from pipelines.core.errors import DcatError
from pipelines.core.io import atomic_path
from pipelines.learn.models import DcatModel, ModelConfig, build_model

CKPT_FORMAT = "dcat-checkpoint"
CKPT_VERSION = 1


class CheckpointError(DcatError):
    """A checkpoint that cannot be read, or does not fit the data it is used with."""


def save_checkpoint(path: Path, payload: dict) -> None:
    """Write ``payload`` (plus format/version) atomically (:func:`pipelines.core.io.atomic_path`)."""
    data = {"format": CKPT_FORMAT, "version": CKPT_VERSION, "tool_version": __version__, **payload}
    with atomic_path(path) as tmp:
        torch.save(data, tmp)


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """Load a dcat checkpoint with ``weights_only=True``; CheckpointError if it is not one."""
    path = Path(path)
    if path.is_dir():
        path = path / "best.pt"
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint; train one with `dcat pretrain` or `dcat transfer`")
    try:
        ck = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling problem is the same user error
        raise CheckpointError(f"{path}: cannot be read as a dcat checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(ck, dict) or ck.get("format") != CKPT_FORMAT:
        raise CheckpointError(f"{path}: not a dcat checkpoint")
    if ck.get("version") != CKPT_VERSION:
        raise CheckpointError(f"{path}: checkpoint version {ck.get('version')} is not one this dcat reads "
                              f"({CKPT_VERSION}); upgrade dcat or retrain")
    return ck


def model_from_checkpoint(ck: dict) -> DcatModel:
    model = build_model(ModelConfig.from_dict(ck["model_config"]))
    model.load_state_dict(ck["model"])
    return model


def data_settings(shards, stream: str, frames: int | None) -> dict:
    """The ``data`` entry of a checkpoint: what the model expects of the shards."""
    info = shards.stream_info[stream]
    out = {"window_s": shards.settings.get("window_s"), "stride_s": shards.settings.get("stride_s"),
           "stream": stream, "kind": info.get("kind"), "rate_hz": info.get("rate_hz"),
           "shape": list(info.get("shape", [])), "frames": frames,
           "channels": list(info.get("channels", [])) if info.get("channels") else None,
           "preprocess": _plain(shards.settings)}
    return out


def _plain(x):
    """JSON-like values only (what ``weights_only`` loading accepts)."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (bool, int, float, str)) or x is None:
        return x
    return str(x)


def _close(a, b) -> bool:
    if a is None or b is None:
        return True
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)
    except (TypeError, ValueError):
        return a == b


def check_data(ck: dict, manifest: dict, where: str, stream: str | None = None) -> None:
    """Refuse shards whose settings differ from what the checkpoint was trained on."""
    d = ck.get("data", {})
    stream = stream or d.get("stream")
    settings = manifest.get("settings", {})
    streams = manifest.get("streams", {})
    problems = []
    if stream not in streams:
        raise CheckpointError(f"{where}: the model reads stream '{stream}' but these shards hold "
                              f"{', '.join(sorted(streams)) or 'no streams'}; preprocess the recordings with a "
                              f"'{stream}' stream")
    info = streams[stream]
    for key in ("window_s", "stride_s"):
        if not _close(d.get(key), settings.get(key)):
            problems.append(f"{key} {settings.get(key)} (model: {d.get(key)})")
    if d.get("kind") and info.get("kind") and d["kind"] != info["kind"]:
        problems.append(f"kind '{info['kind']}' (model: '{d['kind']}')")
    if not _close(d.get("rate_hz"), info.get("rate_hz")):
        problems.append(f"rate {info.get('rate_hz')} Hz (model: {d.get('rate_hz')} Hz)")
    if d.get("shape") and list(info.get("shape", [])) != list(d["shape"]):
        problems.append(f"per-window shape {list(info.get('shape', []))} (model: {list(d['shape'])})")
    if d.get("channels") and info.get("channels") and list(info["channels"]) != list(d["channels"]):
        problems.append(f"channels {list(info['channels'])} (model: {list(d['channels'])})")
    if problems:
        pre = d.get("preprocess", {})
        hint = ", ".join(f"{k}={v}" for k, v in pre.items()) if pre else "the settings above"
        raise CheckpointError(f"{where}: stream '{stream}' does not match the model: " + "; ".join(problems)
                              + f". Re-run `dcat preprocess` with the model's settings ({hint}), or train a "
                                "model on these shards")
