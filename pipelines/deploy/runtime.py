"""Running an exported model as a device would: TorchScript with ``torch.jit.load``, ONNX with onnxruntime.

``load_exported(path)`` returns a function ``windows (numpy [B, *input]) -> logits (numpy [B, n_classes])``
that uses the file alone (no dcat model code, no checkpoint); ``threads`` fixes the CPU threads of
its runtime (torch's intra-op threads, onnxruntime's ``intra_op_num_threads``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from pipelines.core.errors import DcatError

INSTALL_HINT = "pip install 'dcat[deploy]'"


def format_of(path: Path) -> str:
    return "onnx" if Path(path).suffix == ".onnx" else "torchscript"


def load_exported(path: str | Path, fmt: str | None = None, threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """The exported model at ``path`` as a numpy function (``fmt`` from the suffix when None)."""
    path = Path(path)
    fmt = fmt or format_of(path)
    if not path.is_file():
        raise DcatError(f"{path}: no such exported model")
    if fmt == "onnx":
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise DcatError(f"{path}: running an ONNX model needs onnxruntime: {INSTALL_HINT}") from e
        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = int(threads)
            so.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name

        def run_onnx(x: np.ndarray) -> np.ndarray:
            return sess.run(None, {name: np.ascontiguousarray(x)})[0]

        return run_onnx
    if threads:
        torch.set_num_threads(int(threads))
    import warnings

    with warnings.catch_warnings():  # torch 2.13 warns TorchScript is deprecated; it still works
        warnings.filterwarnings("ignore", message=r".*torch\.jit.*deprecated", category=DeprecationWarning)
        ts = torch.jit.load(str(path), map_location="cpu").eval()

    def run_ts(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return ts(torch.from_numpy(np.ascontiguousarray(x))).numpy()

    return run_ts
