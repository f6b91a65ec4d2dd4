"""Run several `dcat` commands, one after the other, in each process torchrun starts.

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/_ddp_job.py JOBS.json

JOBS.json: a list of argument lists, e.g. ``[["pretrain", "--modality", "imu", ...], ...]``. Each is
the `dcat` command line itself (the typer app, exactly as `dcat ARGS...` runs it); one launch
for several commands saves the start-up of the processes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dcat_cli.main import app  # noqa: E402


def main() -> None:
    for args in json.loads(Path(sys.argv[1]).read_text()):
        rc = app(args, standalone_mode=False)  # a failed command returns its exit code
        if isinstance(rc, int) and rc:
            sys.exit(rc)


if __name__ == "__main__":
    main()
