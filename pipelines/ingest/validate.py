"""`dcat validate` for raw trees (schemas/raw-layout.md). Shards: pipelines.shards.validate.validate_shards."""

from __future__ import annotations

from pathlib import Path

from pipelines.core.errors import DcatError, RecordingError
from pipelines.ingest.raw import check_segments_inside, discover, load_recording, read_segments, recording_id


def looks_like_shards(path: Path) -> bool:
    p = Path(path)
    return p.is_dir() and ((p / "manifest.json").is_file() or any(p.glob("*.h5")))


def validate_raw(path: Path, deep: bool = False) -> list[str]:
    """Problems in a raw tree, one line each (empty list: valid).

    Checks meta.json against the schema, stream files present and inside their folder, labels.csv
    well formed; ``deep`` also parses every IMU CSV (monotonic time, numeric cells) and opens every
    video and audio file.
    """
    problems: list[str] = []
    try:
        recs = discover([path])
    except DcatError as e:
        return [str(e)]
    for d in recs:
        try:
            rec = load_recording(d)
            segs = read_segments(rec)
            if not deep:
                continue
            from pipelines.ingest.streams import KINDS

            ends = []
            for s in rec.streams.values():
                end = KINDS[s.kind].probe_end_s(s, rec.id)
                if end is not None:
                    ends.append(end)
            if ends:
                check_segments_inside(rec, segs, max(ends))
        except DcatError as e:  # RecordingError: "<id>: <file>: <problem>", as preprocess says it
            problems.append(str(e) if isinstance(e, RecordingError) else f"{recording_id(d.name)}: {e}")
        except Exception as e:  # a bug or an unforeseen library failure: a line, as preprocess reports it
            problems.append(f"{recording_id(d.name)}: internal error {type(e).__name__}: {str(e)[:200]}")
    return problems
