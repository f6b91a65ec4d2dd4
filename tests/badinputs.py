"""Bad-input cases for `dcat preprocess`: each function damages one recording folder in place.

The tests copy a small synthesized recording, call one of these on the copy, and check that
`dcat preprocess` fails that recording alone, with a message naming the recording, the file and the
problem (or, for NaN runs and gaps, that it drops and counts the affected windows).

Every mutator takes the recording folder and returns the name of the file it damaged, as it appears
in meta.json (the file the error message must name).
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np

# ------------------------------------------------------------------------------------------ base data
BASE_SECONDS = 10.0


def make_base(root: Path) -> dict[str, Path]:
    """Synthesize the base recordings once: two with AAC audio inside video.mp4 and one with a
    separate audio.wav. No IMU dropouts and no whole-recording labels, so a clean run drops no window
    for ``gap`` or ``nan`` and every recording has a labels.csv.

    Returns ``{"a": ..., "b": ..., "wav": ...}``: recording folders (folder names s01_r01, s02_r01, w01_r01).
    """
    from pipelines.synth import SynthConfig, synthesize

    root = Path(root)
    common = dict(recordings=1, seconds=BASE_SECONDS, dropouts=False, whole_label_every=0)
    synthesize(root / "container", SynthConfig(subjects=2, seed=11, audio="container", **common))
    synthesize(root / "wavset", SynthConfig(subjects=1, seed=12, audio="wav", **common))
    wav = root / "wav" / "w01_r01"
    shutil.copytree(root / "wavset" / "s01_r01", wav)
    return {"a": root / "container" / "s01_r01", "b": root / "container" / "s02_r01", "wav": wav}


def copy_recording(src: Path, raw_dir: Path, rid: str) -> Path:
    """Copy recording folder ``src`` to ``raw_dir/rid`` (the folder name is the recording id)."""
    dst = Path(raw_dir) / rid
    shutil.copytree(src, dst)
    return dst


# ------------------------------------------------------------------------------------------ helpers
def _meta(rec: Path) -> dict:
    return json.loads((rec / "meta.json").read_text())


def _write_meta(rec: Path, meta: dict) -> None:
    (rec / "meta.json").write_text(json.dumps(meta, indent=1))


def stream_file(rec: Path, stream: str) -> str:
    return _meta(rec)["streams"][stream]["file"]


def _imu_lines(rec: Path) -> list[str]:
    return (rec / stream_file(rec, "imu")).read_text().splitlines()


def _write_imu_lines(rec: Path, lines: list[str]) -> None:
    (rec / stream_file(rec, "imu")).write_text("\n".join(lines) + "\n")


def imu_times(rec: Path) -> np.ndarray:
    """The IMU ``t`` column (stream clock)."""
    lines = _imu_lines(rec)
    return np.array([float(ln.split(",", 1)[0]) for ln in lines[1:] if ln.strip()])


def imu_offset(rec: Path) -> float:
    return float(_meta(rec)["streams"]["imu"].get("clock_offset_s", 0.0))


def imu_middle(rec: Path) -> float:
    """Stream time in the middle of the IMU recording."""
    t = imu_times(rec)
    return float((t[0] + t[-1]) / 2)


# ------------------------------------------------------------------------------------------ video
def corrupt_video(rec: Path, seed: int = 0) -> str:
    """Replace video.mp4 with random bytes of the same size."""
    f = stream_file(rec, "video")
    p = rec / f
    n = p.stat().st_size
    p.write_bytes(np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes())
    return f


def faststart(rec: Path) -> str:
    """Remux video.mp4 (stream copy, PyAV) with the index (moov atom) at the front, as web/phone
    recorders write it: a truncated copy then still has its index and loses only media data."""
    import av

    f = stream_file(rec, "video")
    p = rec / f
    tmp = p.with_name(".faststart.mp4")
    with av.open(str(p)) as src, av.open(str(tmp), "w", format="mp4", options={"movflags": "faststart"}) as dst:
        out_streams = {s.index: dst.add_stream_from_template(s) for s in src.streams}
        for pkt in src.demux():
            if pkt.dts is None:  # the demuxer's flush packets
                continue
            pkt.stream = out_streams[pkt.stream.index]
            dst.mux(pkt)
    tmp.replace(p)
    return f


def truncate_video(rec: Path, frac: float = 0.4) -> str:
    """Cut video.mp4 to ``frac`` of its bytes (as an interrupted copy or upload would)."""
    f = stream_file(rec, "video")
    p = rec / f
    data = p.read_bytes()
    p.write_bytes(data[: int(len(data) * frac)])
    return f


# ------------------------------------------------------------------------------------------ audio
def shorten_wav(rec: Path, frac: float = 0.5) -> str:
    """Rewrite audio.wav (a valid file) with only its first ``frac`` of samples."""
    import soundfile as sf

    f = stream_file(rec, "audio")
    assert f.endswith(".wav"), f"shorten_wav needs a recording with a separate wav, got {f}"
    p = rec / f
    x, sr = sf.read(str(p), dtype="int16", always_2d=True)
    info = sf.info(str(p))
    sf.write(str(p), x[: int(len(x) * frac)], sr, subtype=info.subtype)
    return f


def truncate_wav_bytes(rec: Path, frac: float = 0.5) -> str:
    """Cut audio.wav to ``frac`` of its bytes: the header still announces the full length."""
    f = stream_file(rec, "audio")
    assert f.endswith(".wav"), f"truncate_wav_bytes needs a recording with a separate wav, got {f}"
    p = rec / f
    data = p.read_bytes()
    p.write_bytes(data[: int(len(data) * frac)])
    return f


# ------------------------------------------------------------------------------------------ IMU CSV
# Line numbers are 1-based file lines (line 1 is the header), as the error messages count them.
def imu_non_numeric_cell(rec: Path, line: int = 40, column: int = 3, value: str = "abc") -> str:
    lines = _imu_lines(rec)
    cells = lines[line - 1].split(",")
    cells[column - 1] = value
    lines[line - 1] = ",".join(cells)
    _write_imu_lines(rec, lines)
    return stream_file(rec, "imu")


def imu_ragged_row(rec: Path, line: int = 40) -> str:
    """Drop the last cell of one row."""
    lines = _imu_lines(rec)
    lines[line - 1] = ",".join(lines[line - 1].split(",")[:-1])
    _write_imu_lines(rec, lines)
    return stream_file(rec, "imu")


def imu_header_without_t(rec: Path, name: str = "time") -> str:
    lines = _imu_lines(rec)
    cells = lines[0].split(",")
    assert cells[0] == "t"
    cells[0] = name
    lines[0] = ",".join(cells)
    _write_imu_lines(rec, lines)
    return stream_file(rec, "imu")


def imu_swap_rows(rec: Path, line: int = 40) -> str:
    """Swap file lines ``line`` and ``line + 1``: time goes backwards at ``line + 1``."""
    lines = _imu_lines(rec)
    lines[line - 1], lines[line] = lines[line], lines[line - 1]
    _write_imu_lines(rec, lines)
    return stream_file(rec, "imu")


def imu_nan_run(rec: Path, t_from: float, t_to: float) -> str:
    """Write ``nan`` into every channel of the rows with stream time in [t_from, t_to)."""
    lines = _imu_lines(rec)
    out = [lines[0]]
    hit = 0
    for ln in lines[1:]:
        cells = next(csv.reader(io.StringIO(ln)))
        if t_from <= float(cells[0]) < t_to:
            cells = [cells[0]] + ["nan"] * (len(cells) - 1)
            hit += 1
        out.append(",".join(cells))
    assert hit > 0, "the NaN run hit no row"
    _write_imu_lines(rec, out)
    return stream_file(rec, "imu")


def imu_gap(rec: Path, t_from: float, t_to: float) -> str:
    """Remove the rows with stream time in [t_from, t_to) (a logger dropout)."""
    lines = _imu_lines(rec)
    keep = [lines[0]] + [ln for ln in lines[1:] if not (t_from <= float(ln.split(",", 1)[0]) < t_to)]
    assert len(keep) < len(lines), "the gap removed no row"
    _write_imu_lines(rec, keep)
    return stream_file(rec, "imu")


# ------------------------------------------------------------------------------------------ layout
def delete_stream_file(rec: Path, stream: str = "imu") -> str:
    f = stream_file(rec, stream)
    (rec / f).unlink()
    return f


def stream_path_escapes(rec: Path, stream: str = "imu") -> str:
    """Point the stream at ``../other/<file>``, a real file outside the recording folder."""
    f = stream_file(rec, stream)
    other = rec.parent / "other"
    other.mkdir(exist_ok=True)
    shutil.copy2(rec / f, other / Path(f).name)
    meta = _meta(rec)
    bad = f"../other/{Path(f).name}"
    meta["streams"][stream]["file"] = bad
    _write_meta(rec, meta)
    return bad


def labels_outside(rec: Path, beyond_s: float = 100.0) -> str:
    """Append a segment that ends ``beyond_s`` after the end of the recording."""
    p = rec / "labels.csv"
    rows = [r for r in csv.reader(io.StringIO(p.read_text())) if r]
    last_end = max(float(r[1]) for r in rows[1:])
    end = BASE_SECONDS + beyond_s  # the base recordings are BASE_SECONDS long (video clock = recording clock)
    with open(p, "a", newline="") as fh:
        fh.write(f"{last_end:.3f},{end:.3f},{rows[-1][2]}\n")
    return "labels.csv"


def meta_invalid_json(rec: Path) -> str:
    p = rec / "meta.json"
    p.write_text(p.read_text().rstrip().rstrip("}") + ",\n")  # cut the closing brace: not JSON
    return "meta.json"


def meta_missing_subject(rec: Path) -> str:
    meta = _meta(rec)
    del meta["subject"]
    _write_meta(rec, meta)
    return "meta.json"
