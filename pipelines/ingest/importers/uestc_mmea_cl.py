"""UESTC-MMEA-CL (egocentric video + accelerometer + gyroscope, 32 classes) into dcat's raw layout.

One recording per clip ``<class_dir>_<YYYY>_<MM>_<DD>_<hh>_<mm>_<ss>``: ``video/<class_dir>/<clip>.mp4``
hard-linked (or copied) as it is (plus an ``audio`` stream on the same file if the container has an
audio track), ``sensor/<class_dir>/<clip>.csv`` (no header, no time column, columns 0-5 = acc x/y/z
and gyro x/y/z as raw MPU counts) written as ``imu.csv`` in m/s^2 and rad/s, and the class name
(the folder name without its number, e.g. ``open_close_door``) as the whole-recording label. The
official ``train.txt``/``val.txt``/``test.txt`` lists go to ``splits.json`` (protocol ``official``).

Layout, formats and protocol, and the sources that confirm them:
- The authors' baseline repository Xu-Linfeng/UESTC_MMEA_CL_main@2daa3c4b (README.md: the tree
  ``train.txt, val.txt, test.txt, video/<class_dir>/, sensor/<class_dir>/``, 32 classes, "fully
  synchronized" video, acceleration and gyroscope; utils/mydata_manager.py: the sensor file is
  ``<sensor root>/<class_dir>/<clip>.csv`` read with ``pd.read_csv(f, header=None)``, columns 0-5,
  ``acc = raw / 8192`` (g) and ``gyro = raw / 16.4`` (deg/s); utils/mydataset.py and
  video_records/mydataset_record.py: list lines ``<path> <rgb frames> <sensor rows> <label>`` with a
  0-based label, lines with fewer than 3 RGB frames dropped); its mydataset_{train,val,test}.txt
  (4552 / 652 / 1315 clips) have the same format and are accepted under those names too.
- Download page https://ivipclab.github.io/publication_uestc-mmea-cl/mmea-cl/ (README; non-commercial use);
  the frame extractor the authors point to (ivipclab/Frame-extractor vid2img.py) lists ``video/<class>/*.mp4``.
- Paper: Xu et al., IEEE TMM 2024 (arXiv 2301.10931): 32 activities, 10 participants.

Time base (an assumption, recorded in each meta.json as ``time_base``): the sensor CSV has no time
column and its row count is within 1 % of the clip's RGB frame count on every line of the authors'
lists (sensor rows / frames between 0.994 and 1.009 in mydataset_train.txt), so the sensor was logged
once per video frame: ``t = row / fps`` with fps the video container's average frame rate (about
25 fps: 30.4 h over 6519 clips of ~420 frames), ``rate_hz = fps``, both streams starting at 0.

Subjects: the dataset names no participant (not in file names nor in the lists), so every recording
gets ``subject = "unknown"`` (``subject_source`` says why) and ``session`` = the recording date from
the clip name; cross-subject protocols are impossible, the official split is by clip.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np

from pipelines.ingest.importers.base import (
    DEG,
    DatasetImportError,
    DatasetInfo,
    G,
    ImportReport,
    RecordingWriter,
    write_splits,
)

NAME = "uestc-mmea-cl"
SUBJECT = "unknown"
CLIP_RE = re.compile(r"^(?P<cls>(?P<num>\d+)_[A-Za-z_]+?)_(?P<date>\d{4}_\d{2}_\d{2})_\d{2}_\d{2}_\d{2}$")
ACC_LSB_PER_G = 8192.0  # MPU-6xxx +-4 g full scale (the authors' loader divides by it)
GYR_LSB_PER_DPS = 16.4  # MPU-6xxx +-2000 deg/s full scale
CHANNELS = ["acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z"]
ROLES = {c: c[:3] for c in CHANNELS}
PARTS = ("train", "val", "test")
#: the loader of the authors drops list lines with fewer RGB frames than this
MIN_FRAMES = 3
#: a sensor/frame row ratio outside this band makes the "one row per frame" assumption doubtful
ROW_RATIO_BAND = (0.95, 1.05)
TIME_BASE = ("imu: the sensor CSV has no time column and about one row per video frame, so t = row / fps "
             "with fps the video container's average frame rate (rate_hz); video: container timestamps; "
             "both start at the clip's start (offset 0; the dataset calls them fully synchronized)")


def class_label(class_dir: str) -> str:
    """``27_open_close_door`` -> ``open_close_door`` (the class name without its folder number)."""
    return class_dir.split("_", 1)[1] if "_" in class_dir and class_dir.split("_", 1)[0].isdigit() else class_dir


def label_id(class_dir: str) -> int | None:
    """``27_open_close_door`` -> 26 (the 0-based label of the authors' lists: folder number - 1)."""
    num = class_dir.split("_", 1)[0]
    return int(num) - 1 if num.isdigit() else None


def read_lists(src: Path) -> tuple[dict[str, dict[str, str]], list[str]]:
    """Part -> {clip: class_dir} from train/val/test.txt (or mydataset_*.txt); and notes."""
    parts: dict[str, dict[str, str]] = {}
    notes: list[str] = []
    for part in PARTS:
        path = next((p for p in (src / f"{part}.txt", src / f"mydataset_{part}.txt") if p.is_file()), None)
        if path is None:
            continue
        clips: dict[str, str] = {}
        short = 0
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            f = line.split()
            if not f:
                continue
            comps = [c for c in re.split(r"[\\/]", f[0]) if c]
            if len(f) < 4 or len(comps) < 2 or not f[1].isdigit():
                notes.append(f"{path.name} line {n}: not '<path> <frames> <rows> <label>'; ignored")
                continue
            if int(f[1]) < MIN_FRAMES:
                short += 1
                continue
            if label_id(comps[-2]) is not None and str(label_id(comps[-2])) != f[3]:
                notes.append(f"{path.name} line {n}: label {f[3]} does not match folder {comps[-2]}")
            clips[re.sub(r"\.(mp4|csv)$", "", comps[-1], flags=re.IGNORECASE)] = comps[-2]
        if short:
            notes.append(f"{path.name}: {short} line(s) with fewer than {MIN_FRAMES} RGB frames left out of "
                         f"the split, as the authors' loader drops them")
        parts[part] = clips
    return parts, notes


def scan(src: Path) -> dict[str, dict[str, Path]]:
    """Clip -> {"video": mp4, "sensor": csv} from ``video/<class_dir>/`` and ``sensor/<class_dir>/``."""
    clips: dict[str, dict[str, Path]] = {}
    for kind, folder, ext in (("video", "video", ".mp4"), ("sensor", "sensor", ".csv")):
        for p in sorted((src / folder).glob("*/*")):
            if p.suffix.lower() == ext and p.is_file():
                clips.setdefault(p.stem, {})[kind] = p
    return clips


def read_sensor(path: Path) -> tuple[np.ndarray, int]:
    """Raw counts [N, 6] (columns 0-5; a header row is dropped) and the number of extra columns."""
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    if rows and not _numeric(rows[0][:6]):
        rows = rows[1:]
    if len(rows) < 2:
        raise ValueError(f"{len(rows)} data row(s); need at least 2")
    width = min(len(r) for r in rows)
    if width < 6:
        raise ValueError(f"a row has {width} column(s); expected acc x/y/z and gyro x/y/z (6)")
    try:
        x = np.array([[float(c) if c.strip() else np.nan for c in r[:6]] for r in rows], dtype=np.float64)
    except ValueError as e:
        raise ValueError(f"non-numeric cell ({e})") from None
    return x, max(len(r) for r in rows) - 6


def _numeric(cells: list[str]) -> bool:
    try:
        [float(c) for c in cells]
    except ValueError:
        return False
    return True


def video_info(path: Path) -> tuple[float, int, bool]:
    """(average frame rate, frame count or 0, has an audio track) from the container; ValueError if unreadable."""
    import av

    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise ValueError("no video track")
            v = c.streams.video[0]
            rate = float(v.average_rate or v.guessed_rate or 0)
            frames = int(v.frames or 0)
            if rate <= 0 and frames and v.duration and v.time_base:
                rate = frames / float(v.duration * v.time_base)
            return rate, frames, bool(c.streams.audio)
    except (av.error.FFmpegError, OSError) as e:
        raise ValueError(f"unreadable video ({e})") from None


def _import_clip(rep: ImportReport, out: Path, clip: str, files: dict[str, Path], media: str,
                 split: str | None) -> bool:
    m = CLIP_RE.match(clip)
    if "video" not in files or "sensor" not in files:
        missing = "video .mp4" if "video" not in files else "sensor .csv"
        rep.skip(clip, str(files.get("video") or files.get("sensor")), f"no {missing} for this clip; clip skipped")
        return False
    class_dir = files["video"].parent.name
    try:
        fps, frames, has_audio = video_info(files["video"])
        if fps <= 0:
            raise ValueError("the container gives no frame rate")
    except ValueError as e:
        rep.skip(clip, str(files["video"]), f"{e}; the sensor's time base comes from the video's frame rate")
        return False
    try:
        raw, extra = read_sensor(files["sensor"])
    except (ValueError, OSError) as e:
        rep.skip(clip, str(files["sensor"]), str(e))
        return False
    acc_g, gyr_dps = raw[:, :3] / ACC_LSB_PER_G, raw[:, 3:6] / GYR_LSB_PER_DPS
    norms = np.linalg.norm(acc_g, axis=1)
    if not np.isfinite(norms).any():
        rep.skip(clip, str(files["sensor"]), "no row with all three acceleration values; clip skipped")
        return False
    norm = float(np.median(norms[np.isfinite(norms)]))
    if not 0.5 <= norm <= 2.0:
        rep.notes.append(f"{clip}: median |acc| = {norm:.3g} g after /{ACC_LSB_PER_G:g}: not about 1 g; "
                         "check the sensor's scale")
    ratio = len(raw) / frames if frames else None
    if ratio is not None and not ROW_RATIO_BAND[0] <= ratio <= ROW_RATIO_BAND[1]:
        rep.notes.append(f"{clip}: {len(raw)} sensor rows for {frames} video frames: the one-row-per-frame "
                         "time base is doubtful for this clip")
    if extra:
        rep.notes.append(f"{clip}: {files['sensor'].name} has {extra} column(s) after the 6 read; ignored")
    w = RecordingWriter(out, clip, subject=SUBJECT, media=media, session=m["date"] if m else None)
    w.add_media("video", "video", files["video"], filename=f"{clip}.mp4", clock_offset_s=0.0)
    if has_audio:
        w.add_media("audio", "audio", files["video"], filename=f"{clip}.mp4", clock_offset_s=0.0)
    w.add_imu("imu", np.arange(len(raw)) / fps, np.concatenate([acc_g * G, gyr_dps * DEG], axis=1), CHANNELS,
              units={c: ("m/s^2" if c.startswith("acc") else "rad/s") for c in CHANNELS},
              source_units={c: ("counts/8192 g" if c.startswith("acc") else "counts/16.4 deg/s") for c in CHANNELS},
              rate_hz=round(fps, 6), clock_offset_s=0.0, roles=dict(ROLES), rate_source="video frame rate",
              source_file=f"sensor/{class_dir}/{files['sensor'].name}", acc_median_norm_g=round(norm, 4))
    w.set_label(class_label(class_dir))
    w.save(dataset=NAME, class_dir=class_dir, label_id=label_id(class_dir), split=split, time_base=TIME_BASE,
           video_frames=frames or None, imu_rows=len(raw),
           subject_source="not provided by the dataset (10 unnamed participants); session = recording date")
    rep.written.append(clip)
    return True


def prepare(src: Path, out: Path, subjects: list[str] | None = None, media: str = "link",
            **options) -> ImportReport:
    """Import UESTC-MMEA-CL from ``src`` (the folder holding ``video/``, ``sensor/`` and the lists) into ``out``."""
    src, out = Path(src), Path(out)
    if not (src / "video").is_dir() and not (src / "sensor").is_dir():
        raise DatasetImportError(f"{src}: no video/ or sensor/ folder; give the UESTC-MMEA-CL folder holding "
                                 "video/<class>/<clip>.mp4, sensor/<class>/<clip>.csv and train/val/test.txt")
    if subjects and set(subjects) != {SUBJECT}:
        raise DatasetImportError(f"UESTC-MMEA-CL names no subjects (every recording gets subject '{SUBJECT}'); "
                                 "--subjects cannot select any")
    rep = ImportReport(dataset=NAME, out=str(out))
    clips = scan(src)
    if not clips:
        raise DatasetImportError(f"{src}: no clips in video/<class>/*.mp4 or sensor/<class>/*.csv")
    parts, notes = read_lists(src)
    rep.notes.extend(notes)
    part_of = {c: p for p in PARTS for c in parts.get(p, {})}
    for clip in sorted(clips):
        _import_clip(rep, out, clip, clips[clip], media, part_of.get(clip))
    written = set(rep.written)
    for p in PARTS:
        gone = [c for c in parts.get(p, {}) if c not in clips]
        if gone:
            rep.notes.append(f"{p} list: {len(gone)} clip(s) not in video/ or sensor/ (e.g. {gone[0]})")
    unlisted = [c for c in rep.written if c not in part_of]
    if parts and unlisted:
        rep.notes.append(f"{len(unlisted)} clip(s) in no list (imported, in no split), e.g. {unlisted[0]}")
    official = {p: [c for c in parts[p] if c in written] for p in PARTS if p in parts}
    if official.get("train") and official.get("test"):
        rep.protocols = write_splits(out, {"official": official}, source="UESTC-MMEA-CL train.txt/val.txt/"
                                     "test.txt (Xu et al., IEEE TMM 2024); list lines with < 3 RGB frames dropped "
                                     "as in the authors' loader")
    else:
        rep.notes.append("no splits.json: train.txt and test.txt (or mydataset_*.txt) not found, or no listed "
                         "clip imported")
    rep.notes.append(f"time base: {TIME_BASE}")
    rep.notes.append(f"subject: every recording is subject '{SUBJECT}' (the dataset names no participant); "
                     "session = the recording date from the clip name")
    return rep


INFO = DatasetInfo(
    name=NAME,
    title="UESTC-MMEA-CL (multimodal egocentric activities for continual learning)",
    modalities="egocentric video (~25 fps) + IMU (acc, gyro; one row per video frame)",
    subjects="none named (10 participants): subject 'unknown'",
    classes="32 activities",
    url="https://ivipclab.github.io/publication_uestc-mmea-cl/mmea-cl/",
    protocols=("official",),
    prepare=prepare,
    notes="official train/val/test lists; no subject ids, so no cross-subject protocol",
)
