"""What an exported target model costs on one CPU thread: size, work per window, latency, windows/s.

    python benchmarks/deploy.py --work /tmp/deploy              # sample_data (IMU + audio), ~3 min
    python benchmarks/deploy.py --run runs/imu-id --run runs/audio-id --json
    python benchmarks/deploy.py --smoke                         # tiny synthetic data, seconds

Models: without ``--run``, the bundled ``sample_data/`` preprocessed with the default settings for
its IMU and audio streams only (``dcat preprocess sample_data --streams imu,audio``) and one IMU
and one audio model pretrained on it at the default model settings (``--epochs``, default 2: the
cost of a window does not depend on how well the model is trained). Each run is exported with
``pipelines.deploy.export.export_run`` (an audio run twice: waveform input with the log-mel front
end inside, and log-mel input).

For each exported model: parameters; bytes of the TorchScript and ONNX files; multiply-accumulates
per window (``torch.utils.flop_counter.FlopCounterMode`` on batch 1: convolutions, matrix
products, attention (added by hand where torch's counter has no formula for the CPU kernel);
MACs = FLOPs / 2; element-wise work, e.g. the softmax, is not counted) with the front end's share;
the model's weights and buffers in bytes (float32; the front end's DFT and mel constants apart);
the largest layer input + output at batch 1 (a lower bound on the activation memory of an arena
that reuses buffers); and for each runtime (eager PyTorch, TorchScript, ONNX with onnxruntime) on
ONE thread (``torch.set_num_threads(1)``; ``intra_op_num_threads=1``) the latency of one window at
batch 1 (median, p95 over ``--reps`` calls after warm-up) and windows/s at batch 1 and batch 64
(windows / median call time). ``of stride``: the median latency as a share of the window stride,
the time a device has per window in real time.

``main()`` runs the sections in order and joins their figures; a further section (e.g. streaming
delay, ``benchmarks/deploy_stream.py``) appends its own entry to ``res``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

import common

log = common.log
RUNTIMES = ("eager", "torchscript", "onnx")


def _windows(run: Path, n: int, waveform: bool) -> np.ndarray:
    """The first ``n`` windows (repeated if fewer) of the run's stream from the shards it trained on."""
    import h5py

    from pipelines.learn.checkpoint import load_checkpoint
    from pipelines.shards.manifest import shard_files

    ck = load_checkpoint(run / "best.pt")
    stream = ck["stream"]
    data = Path(ck["train_config"]["data"])
    key, starts, per = (("waveform", "waveform_window_start", "waveform_samples_per_window") if waveform else
                        ({"imu": "data", "audio": "logmel", "video": "frames"}[ck["model_config"]["kind"]],
                         "window_start", "samples_per_window"))
    out: list[np.ndarray] = []
    for p in shard_files(data):
        with h5py.File(p, "r") as f:
            g = f[f"streams/{stream}"]
            if key not in g:
                raise SystemExit(f"{p}: stream {stream} has no {key} (preprocess with --audio-waveform)")
            t = int(g.attrs[per])
            out += [g[key][a: a + t] for a in g[starts][: n - len(out)]]
        if len(out) >= n:
            break
    x = np.stack(out)
    return np.concatenate([x] * (-(-n // len(x))))[:n]


def prepare_runs(args, work: Path) -> list[dict]:
    """The models to measure: ``--run`` folders, or IMU and audio models trained on ``sample_data``
    (``--smoke``: on two synthetic 12 s recordings)."""
    if args.run:
        runs = [Path(r) for r in args.run]
    else:
        from pipelines.ingest.config import PreprocessConfig
        from pipelines.ingest.preprocess import preprocess
        from pipelines.ingest.raw import discover
        from pipelines.learn.config import TrainConfig
        from pipelines.learn.pretrain import pretrain

        raw = common.SAMPLE_DATA
        if args.smoke:
            from pipelines.synth import SynthConfig, synthesize

            raw = work / "raw"
            if not raw.is_dir():
                synthesize(raw, SynthConfig(subjects=2, recordings=1, seconds=12.0, seed=7, whole_label_every=0))
        shards = work / "shards"
        if not (shards / "manifest.json").is_file():
            t0 = time.perf_counter()
            preprocess(discover([raw]), shards, PreprocessConfig(streams=("imu", "audio"), audio_waveform=True),
                       workers=1)
            log(f"preprocessed {raw} (imu, audio) into {shards} ({time.perf_counter() - t0:.0f} s)")
        small = dict(d=16, heads=2, block_s=2.0) if args.smoke else {}
        runs = []
        for kind in ("imu", "audio"):
            run = work / "runs" / kind
            if not (run / "best.pt").is_file():
                pretrain(TrainConfig(data=str(shards), modality=kind, out=str(run), epochs=args.epochs, threads=1,
                                     overwrite=True, **small))
            runs.append(run)
    from pipelines.learn.checkpoint import load_checkpoint

    models = []
    for run in runs:
        kind = load_checkpoint(run / "best.pt")["model_config"]["kind"]
        for inp in (("waveform", "logmel") if kind == "audio" else ("",)):
            models.append({"name": f"{run.name}" + (f" ({inp})" if inp else ""), "run": run,
                           "audio_input": inp or "waveform"})
    return models


def _time_calls(fn, x: np.ndarray, reps: int) -> list[float]:
    for _ in range(max(2, reps // 10)):
        fn(x)
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn(x)
        out.append(time.perf_counter() - t0)
    return out


def _work(module, x) -> dict:
    """MACs per window (batch 1), the front end's share, weights and the largest layer in + out bytes."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from pipelines.learn.models.attention import KVSelfAttention

    attn = [0]

    def count_attention(m, inp, _out):  # QK^T and AV: 2 L^2 d per window
        _, n, d = inp[0].shape
        attn[0] += 2 * n * n * d

    def macs(m, inp):
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            m(inp)
        counted = any("scaled_dot_product" in str(op) for op in fc.get_flop_counts().get("Global", {}))
        return fc.get_total_flops() // 2, counted

    x1 = torch.from_numpy(x[:1])
    hs = [m.register_forward_hook(count_attention) for m in module.modules() if isinstance(m, KVSelfAttention)]
    total, sdpa_counted = macs(module, x1)
    for h in hs:
        h.remove()
    if not sdpa_counted:  # torch's counter has no formula for the CPU attention kernel: add it
        total += attn[0]
    front = macs(module.frontend, x1)[0] if module.frontend is not None else 0
    largest = [0]

    def hook(_m, inp, out):
        b = sum(t.numel() * t.element_size() for t in (*inp, out) if isinstance(t, torch.Tensor))
        largest[0] = max(largest[0], b)

    hs = [m.register_forward_hook(hook) for m in module.modules() if not list(m.children())]
    with torch.no_grad():
        module(x1)
    for h in hs:
        h.remove()
    def nbytes(m) -> int:
        return int(sum(t.numel() * t.element_size() for t in m.state_dict().values())) if m is not None else 0

    return {"macs": int(total), "frontend_macs": int(front), "weights_bytes": nbytes(module.model),
            "frontend_constant_bytes": nbytes(module.frontend), "largest_layer_io_bytes": int(largest[0])}


def measure(model: dict, work: Path, args) -> dict:
    """Export one model in both formats and time it on each runtime."""
    import torch

    from pipelines.deploy.export import build_target, export_run, missing_onnx_packages
    from pipelines.deploy.runtime import load_exported
    from pipelines.learn.checkpoint import load_checkpoint

    torch.set_num_threads(1)
    ck_path = model["run"] / "best.pt"
    tag = model["name"].replace(" ", "").replace("(", "-").replace(")", "")
    files, side = {}, None
    formats = [f for f in ("torchscript", "onnx") if f in args.runtimes]
    for fmt in formats:
        if fmt == "onnx" and missing_onnx_packages():
            log(f"{model['name']}: onnx skipped ({', '.join(missing_onnx_packages())} not installed)")
            continue
        files[fmt] = work / "export" / f"{tag}{'.pt' if fmt == 'torchscript' else '.onnx'}"
        side = export_run(model["run"], fmt, out=files[fmt], audio_input=model["audio_input"])
    ck = load_checkpoint(ck_path)
    module, inp = build_target(ck, ck_path, model["audio_input"])
    x = _windows(model["run"], 64, "audio" in inp)
    if x.dtype != np.dtype(inp["dtype"]):
        x = x.astype(inp["dtype"])

    def eager(a):
        with torch.no_grad():
            return module(torch.from_numpy(a)).numpy()

    fns = {"eager": eager} if "eager" in args.runtimes else {}
    fns.update({fmt: load_exported(p, fmt, threads=1) for fmt, p in files.items()})
    stride = float(ck["data"]["stride_s"])
    res = {"name": model["name"], "run": str(model["run"]), "stream": ck["stream"], "input": [None, *inp["shape"]],
           "window_s": float(ck["data"]["window_s"]), "stride_s": stride,
           "parameters": sum(p.numel() for p in module.model.parameters()),
           "file_bytes": {fmt: p.stat().st_size for fmt, p in files.items()}, **_work(module, x), "runtimes": {}}
    for name, fn in fns.items():
        one = _time_calls(fn, x[:1], args.reps)
        many = _time_calls(fn, x, max(3, args.reps // 10))
        res["runtimes"][name] = {
            "latency_ms_median": 1e3 * statistics.median(one),
            "latency_ms_p95": 1e3 * float(np.percentile(one, 95)),
            "windows_per_s_batch1": 1.0 / statistics.median(one),
            "windows_per_s_batch64": len(x) / statistics.median(many),
            "share_of_stride": statistics.median(one) / stride}
    res["tolerance"] = side["tolerance"]["max_abs_logit_diff"] if side else None
    return res


def table(rows: list[dict]) -> str:
    lines = ["| model | input | params | TorchScript B | ONNX B | MACs/window (front end) | weights B | largest layer "
             "in+out B | runtime | latency ms median / p95 | windows/s b1 / b64 | of stride |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
    for r in rows:
        head = (f"| {r['name']} | {r['input']} | {r['parameters']:,} | {r['file_bytes'].get('torchscript', 0):,} | "
                f"{r['file_bytes'].get('onnx', 0):,} | {r['macs'] / 1e6:.2f} M ({r['frontend_macs'] / 1e6:.2f} M) | "
                f"{r['weights_bytes']:,} | {r['largest_layer_io_bytes']:,} |")
        for i, (name, t) in enumerate(r["runtimes"].items()):
            lead = head if i == 0 else "|" + " |" * 8
            lines.append(f"{lead} {name} | {t['latency_ms_median']:.2f} / {t['latency_ms_p95']:.2f} | "
                         f"{t['windows_per_s_batch1']:,.0f} / {t['windows_per_s_batch64']:,.0f} | "
                         f"{100 * t['share_of_stride']:.2f}% of {r['stride_s']:g} s |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", action="append", help="a run folder to measure (repeatable; default: train on sample_data)")
    ap.add_argument("--work", help="folder for shards, runs and exported files (default: a new temporary folder)")
    ap.add_argument("--epochs", type=int, default=2, help="epochs of the models trained here (default 2)")
    ap.add_argument("--reps", type=int, default=200, help="timed calls at batch 1 (batch 64: a tenth)")
    ap.add_argument("--runtimes", default=",".join(RUNTIMES), help="comma-separated: eager, torchscript, onnx")
    ap.add_argument("--smoke", action="store_true", help="two synthetic 12 s recordings, tiny models, 20 calls")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON on stdout (the table on stderr)")
    args = ap.parse_args(argv)
    args.runtimes = [r.strip() for r in args.runtimes.split(",") if r.strip()]
    if bad := sorted(set(args.runtimes) - set(RUNTIMES)):
        ap.error(f"--runtimes: unknown {', '.join(bad)} (known: {', '.join(RUNTIMES)})")
    if args.smoke:
        args.reps, args.epochs = min(args.reps, 20), 1
    work = common.work_dir(args.work, "dcat-deploy-")
    import torch

    torch.set_num_threads(1)
    res: dict = {"threads": 1, "torch": torch.__version__, "work": str(work)}
    # section 1: the exported models
    res["models"] = [measure(m, work, args) for m in prepare_runs(args, work)]
    text = table(res["models"])
    # further sections append to ``res`` and ``text`` here
    common.emit(res, text, args.json)
    return res


if __name__ == "__main__":
    main()
