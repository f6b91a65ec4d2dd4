"""`dcat export`: a run's target model alone as TorchScript or ONNX, with its JSON sidecar (``pipelines.deploy.export``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from dcat_cli.common import err_console, out_console, run_guarded
from pipelines.core.io import to_json


def export_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run folder (runs/<name>) or a .pt checkpoint.")],
    fmt: Annotated[str, typer.Option("--format", help="torchscript or onnx (onnx needs the deploy extra: `pip install 'dcat\\[deploy]'`).")] = "torchscript",
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="The model file to write (default: RUN/model.pt or RUN/model.onnx); the sidecar is the same name with .json.")] = None,
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="Checkpoint file in the run folder.")] = "best.pt",
    audio_input: Annotated[str, typer.Option("--audio-input", help="An audio model's input: waveform (at the preprocessing rate, log-mel front end inside) or logmel (the shard's frames).")] = "waveform",
    as_json: Annotated[bool, typer.Option("--json", help="Print the sidecar as JSON on stdout.")] = False,
) -> None:
    """Export the target model alone (input normalisation inside, logits out) for a device.

    Examples: `dcat export runs/imu-id --format torchscript`; `dcat export runs/transfer-video-imu
    --format onnx --out imu.onnx`. The exported model takes a batch of windows in the shard's units
    at the shard's rate; the sidecar (model.json) names the channels, units, rate, window, stride and
    classes, and the largest logit difference from the checkpoint measured after writing.
    """

    def body():
        from pipelines.deploy.export import export_run

        side = export_run(run_dir, fmt, out=out, checkpoint=checkpoint, audio_input=audio_input)
        if as_json:
            out_console.print_json(to_json(side))
            return
        model_path = Path(side["source_run"]["run_dir"]) / side["model_file"] if out is None else (
            out / side["model_file"] if out.is_dir() else out)
        err_console.print(
            f"wrote {model_path} ({side['model_format']}, {side['file_bytes']:,} bytes, "
            f"{side['model']['parameters']:,} parameters) and {model_path.with_suffix('.json')}; input "
            f"{side['input']['shape']} {side['input']['dtype']}, logits within "
            f"{side['tolerance']['max_abs_logit_diff']:.2g} of {side['source_run']['checkpoint']}",
            highlight=False, markup=False)

    run_guarded(body)
