"""EPIC-KITCHENS-100 (``dcat import epic-kitchens SRC``): egocentric video + audio + GoPro accelerometer/gyroscope.

Layout as the official downloader writes it (epic-kitchens/epic-kitchens-download-scripts@1e01ecb:
README.md, epic_downloader.py): ``SRC/<P>/videos/<P>_<NN>.MP4`` and, for the EPIC-100 extension videos
only (``<P>_1NN``; the downloader asserts "GoPro's metadata is available only for EPIC 100"),
``SRC/<P>/meta_data/<video>-accl.csv`` (``Milliseconds,AcclX,AcclY,AcclZ``) and ``<video>-gyro.csv``
(``Milliseconds,GyroX,GyroY,GyroZ``); columns as third-party loaders read them (code index ids
31048291905, 12955938052), units as GoPro's GPMF documents ACCL (m/s^2) and GYRO (rad/s).
``Milliseconds`` is time from the start of the video (the loaders compare it with the annotation
timestamps), so the IMU shares the video's clock: every stream gets ``clock: "gopro"``, offset 0.
The annotations (epic-kitchens/epic-kitchens-100-annotations@ea8b404: README.md,
EPIC_100_validation.csv, EPIC_100_verb_classes.csv) are found in SRC or one folder below it.

One recording per video (id = video_id, subject = participant_id): the MP4 hard-linked as the video
stream, its audio track declared as an ``audio`` stream on the same file, and one ``imu`` stream
(accelerometer rows; the gyroscope linearly interpolated onto their timestamps, NaN outside its
span; ``rate_hz`` estimated from the timestamps; a video with only one of the two CSVs is skipped, so
every imu stream has the same 6 channels). Labels: the verb class of the action segments.
They overlap in EPIC (dense narrations) while labels.csv forbids overlaps: an instant is labelled
only when every segment covering it has the same verb; where different verbs overlap the time stays
unlabelled (counted in meta ``ambiguous_s``), so no window gets a verb that is not the only one
being done. Protocol ``official``: videos of EPIC_100_train.csv train, of EPIC_100_validation.csv
test (the test split's labels are withheld by the challenge server; its videos are skipped).
Videos without the GoPro CSVs (all of EPIC-55) are skipped unless ``video_only=True``: shards of one
folder must share their streams, so a video-only recording would stop ``--modality imu`` training.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from pipelines.ingest.importers.base import (DatasetImportError, DatasetInfo, ImportReport, RecordingWriter,
                                             write_splits)

ANNOTATIONS = {"train": "EPIC_100_train.csv", "validation": "EPIC_100_validation.csv"}
TEST_FILE = "EPIC_100_test_timestamps.csv"
VERB_CLASSES = "EPIC_100_verb_classes.csv"
CLOCK = "gopro"
ACC_COLS, GYR_COLS = ("AcclX", "AcclY", "AcclZ"), ("GyroX", "GyroY", "GyroZ")


def _find(src: Path, name: str) -> Path | None:
    """``name`` in SRC or one folder below (e.g. SRC/epic-kitchens-100-annotations/)."""
    for p in (src / name, *sorted(src.glob(f"*/{name}"))):
        if p.is_file():
            return p
    return None


def _seconds(ts: str) -> float:
    """``HH:MM:SS.ff`` (or ``.fff``) -> seconds; ValueError if malformed."""
    h, m, s = ts.strip().split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = [r for r in csv.reader(f) if r]
    if not rows:
        raise ValueError("empty")
    return [h.strip() for h in rows[0]], rows[1:]


def _annotations(src: Path, report: ImportReport) -> tuple[dict[str, dict], set[str]]:
    """Per video: {"participant", "split", "segments": [(start, stop, verb)]}; and the test videos."""
    classes = {}
    p = _find(src, VERB_CLASSES)
    if p is not None:
        head, rows = _read_csv(p)
        classes = {r[head.index("id")]: r[head.index("key")] for r in rows if len(r) == len(head)}
    videos: dict[str, dict] = {}
    found = False
    for split, name in ANNOTATIONS.items():
        path = _find(src, name)
        if path is None:
            continue
        found = True
        head, rows = _read_csv(path)
        need = ("participant_id", "video_id", "start_timestamp", "stop_timestamp", "verb", "verb_class")
        if any(k not in head for k in need):
            raise DatasetImportError(f"{path}: columns {head[:8]}... lack {[k for k in need if k not in head]}")
        ix = {k: head.index(k) for k in need}
        bad = 0
        for r in rows:
            try:
                a, b = _seconds(r[ix["start_timestamp"]]), _seconds(r[ix["stop_timestamp"]])
            except (ValueError, IndexError):
                bad += 1
                continue
            v = videos.setdefault(r[ix["video_id"]], {"participant": r[ix["participant_id"]], "split": split,
                                                      "segments": []})
            verb = classes.get(r[ix["verb_class"]], r[ix["verb"]]).strip()
            if b > a and verb:
                v["segments"].append((a, b, verb))
        if bad:
            report.notes.append(f"{name}: {bad} rows with unreadable timestamps ignored")
    if not found:
        raise DatasetImportError(f"{src}: no {' or '.join(ANNOTATIONS.values())} in it or one folder below: "
                                 "put the annotations (github.com/epic-kitchens/epic-kitchens-100-annotations) "
                                 "there")
    test = set()
    p = _find(src, TEST_FILE)
    if p is not None:
        head, rows = _read_csv(p)
        if "video_id" in head:
            test = {r[head.index("video_id")] for r in rows if len(r) > head.index("video_id")}
    return videos, test - set(videos)


def unambiguous_segments(segs: list[tuple[float, float, str]]) -> tuple[list[tuple[float, float, str]], float]:
    """Non-overlapping (start, end, verb) where every covering segment has one verb; adjacent pieces of
    one verb merged. Returns them and the seconds left unlabelled because different verbs overlap.
    A sweep over the segment boundaries: between two consecutive boundaries the covering set is fixed."""
    starts = sorted(segs)
    ends = sorted(segs, key=lambda s: s[1])
    cuts = sorted({x for a, b, _ in segs for x in (a, b)})
    active: dict[str, int] = {}
    out: list[tuple[float, float, str]] = []
    ambiguous, i, j = 0.0, 0, 0
    for lo, hi in zip(cuts, cuts[1:]):
        while i < len(starts) and starts[i][0] <= lo:
            active[starts[i][2]] = active.get(starts[i][2], 0) + 1
            i += 1
        while j < len(ends) and ends[j][1] <= lo:
            active[ends[j][2]] -= 1
            if not active[ends[j][2]]:
                del active[ends[j][2]]
            j += 1
        if len(active) > 1:
            ambiguous += hi - lo
        elif active:
            v = next(iter(active))
            if out and out[-1][2] == v and abs(out[-1][1] - lo) < 1e-9:
                out[-1] = (out[-1][0], hi, v)
            else:
                out.append((lo, hi, v))
    return out, ambiguous


def _read_gopro(path: Path, cols: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, int]:
    """(t seconds, data [n, 3], rows dropped) from one GoPro CSV: rows whose time does not increase or
    that are not numbers are dropped. ValueError naming the problem."""
    head, rows = _read_csv(path)
    if "Milliseconds" not in head or any(c not in head for c in cols):
        raise ValueError(f"header {head[:6]} lacks Milliseconds or {', '.join(cols)}")
    ix = [head.index("Milliseconds"), *(head.index(c) for c in cols)]
    vals, bad = [], 0
    for r in rows:
        try:
            vals.append([float(r[i]) for i in ix])
        except (ValueError, IndexError):
            bad += 1
    a = np.asarray(vals, dtype=np.float64).reshape(-1, 4)
    a = a[np.isfinite(a[:, 0])]
    prev = np.r_[-np.inf, np.maximum.accumulate(a[:, 0])[:-1]] if len(a) else np.zeros(0)
    keep = a[:, 0] > prev  # strictly later than every earlier row
    bad += int((~keep).sum())
    a = a[keep]
    if len(a) < 2:
        raise ValueError(f"{len(a)} usable rows")
    return a[:, 0] / 1000.0, a[:, 1:], bad


def _probe(path: Path) -> tuple[bool, float | None]:
    """(has an audio track, duration in s or None) of a video container, read from its header."""
    try:
        import av
    except ModuleNotFoundError:
        return True, None  # EPIC videos carry audio; the duration then comes from the IMU
    try:
        with av.open(str(path)) as c:
            return len(c.streams.audio) > 0, (c.duration / 1e6 if c.duration else None)
    except (OSError, ValueError, av.error.FFmpegError):
        return False, None


def _video_path(src: Path, participant: str, vid: str) -> Path | None:
    for ext in (".MP4", ".mp4"):
        p = src / participant / "videos" / f"{vid}{ext}"
        if p.is_file():
            return p
    return None


def _imu(src: Path, participant: str, vid: str, report: ImportReport
         ) -> tuple[np.ndarray, np.ndarray, dict] | str:
    """(t, [acc | gyr interpolated onto the accelerometer's times], fields) from the GoPro CSVs, or the
    reason there is no imu stream. Both CSVs are needed: every recording's imu has the same 6 channels
    (shards of one folder share a window shape)."""
    got = {}
    for kind, cols in (("accl", ACC_COLS), ("gyro", GYR_COLS)):
        p = src / participant / "meta_data" / f"{vid}-{kind}.csv"
        if not p.is_file():
            return f"no {p.name}"
        try:
            t, x, dropped = _read_gopro(p, cols)
        except (ValueError, OSError, UnicodeDecodeError, csv.Error) as e:
            return f"{p.name} not usable ({e})"
        if dropped:
            report.notes.append(f"{vid}: {p.name}: {dropped} rows not numeric or not later than the previous dropped")
        got[kind] = (t, x)
    (t, acc), (tg, g) = got["accl"], got["gyro"]
    inside = (t >= tg[0]) & (t <= tg[-1])
    gi = np.stack([np.where(inside, np.interp(t, tg, g[:, j]), np.nan) for j in range(3)], 1)
    fields = {"rate_hz": round(float(1.0 / np.median(np.diff(t))), 3), "clock": CLOCK, "clock_offset_s": 0.0,
              "gyr_rate_hz": round(float(1.0 / np.median(np.diff(tg))), 3),
              "gyr_resampled": "linear onto the accelerometer timestamps"}
    return t, np.column_stack([acc, gi]), fields


def _video(src: Path, out: Path, vid: str, info: dict, media: str, video_only: bool,
           report: ImportReport) -> bool:
    """One recording for video ``vid``; False (with the reason reported) when it is skipped."""
    participant = info["participant"]
    video = _video_path(src, participant, vid)
    if video is None:
        report.skip(vid, f"{participant}/videos/{vid}.MP4", "video missing")
        return False
    imu = _imu(src, participant, vid, report)
    if isinstance(imu, str) and not video_only:
        num = vid.rsplit("_", 1)[-1]
        why = ("an EPIC-55 video: GoPro metadata exists only for the EPIC-100 extension" if len(num) < 3 else
               "download it with epic_downloader.py --metadata" if imu.startswith("no ") else "")
        report.skip(vid, f"{participant}/meta_data/", f"{imu}{f' ({why})' if why else ''}: skipped so that every "
                    "recording has the 6-channel imu stream (video_only=True imports the video and audio alone)")
        return False
    has_audio, duration = _probe(video)
    imu_end = None if isinstance(imu, str) else float(imu[0][-1])
    end = max(x for x in (duration, imu_end) if x is not None) if (duration or imu_end) else None
    segs, ambiguous = unambiguous_segments(info["segments"])
    if end is not None:
        segs = [(a, min(b, end), v) for a, b, v in segs if a < end and min(b, end) - a > 1e-3]
    if not segs:
        report.skip(vid, None, "no action segment inside the video where one verb alone is annotated")
        return False
    w = RecordingWriter(out, vid, participant, media)
    w.add_media("video", "video", video, filename="video" + video.suffix.lower(), clock=CLOCK)
    if has_audio:
        w.meta["streams"]["audio"] = {"kind": "audio", "file": w.meta["streams"]["video"]["file"], "clock": CLOCK}
    else:
        report.notes.append(f"{vid}: the video has no audio track: no audio stream")
    if isinstance(imu, str):
        report.notes.append(f"{vid}: {imu}: imported video-only (video_only=True)")
    else:
        t, data, fields = imu
        names = ["acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z"]
        units = {n: "m/s^2" if n.startswith("acc") else "rad/s" for n in names}
        w.add_imu("imu", t, data, names, units, source_units=dict(units), roles={n: n[:3] for n in names}, **fields)
    w.set_segments(segs)
    w.save(dataset="epic-kitchens-100", split=info["split"], label_kind="verb", actions=len(info["segments"]),
           ambiguous_s=round(ambiguous, 3))
    return True


def prepare(src: Path, out: Path, subjects: list[str] | None = None, media: str = "link", **options) -> ImportReport:
    """Import the EPIC-KITCHENS-100 videos under ``src`` that have action annotations (see the module doc).
    ``options["video_only"]``: also import videos without GoPro CSVs (no imu stream)."""
    src, out = Path(src), Path(out)
    report = ImportReport("epic-kitchens", str(out))
    videos, test = _annotations(src, report)
    if not any((src / v["participant"] / "videos").is_dir() for v in videos.values()):
        raise DatasetImportError(f"{src}: no <participant>/videos/ folder of an annotated video: give the folder "
                                 "epic_downloader.py wrote (EPIC-KITCHENS/P01/videos/...)")
    if test:
        report.notes.append(f"{len(test)} test video(s) not imported: their labels are withheld (challenge server)")
    split_ids: dict[str, list[str]] = {"train": [], "validation": []}
    for vid in sorted(videos):
        info = videos[vid]
        if subjects and info["participant"] not in subjects:
            continue
        if _video(src, out, vid, info, media, bool(options.get("video_only")), report):
            report.written.append(vid)
            split_ids[info["split"]].append(vid)
    if split_ids["train"] and split_ids["validation"]:
        report.protocols = write_splits(out, {"official": {"train": split_ids["train"],
                                                           "test": split_ids["validation"]}},
                                        source="EPIC_100_train.csv (train) / EPIC_100_validation.csv (test)")
    else:
        report.notes.append("protocol official not written: no imported video of the train or the validation file")
    return report


INFO = DatasetInfo(
    name="epic-kitchens", title="EPIC-KITCHENS-100 (egocentric kitchen video, audio, GoPro accelerometer/gyroscope)",
    modalities="video + audio (from the MP4) + imu (extension videos with GoPro CSVs)", subjects="37 participants",
    classes="97 verbs (action segments; overlapping verbs left unlabelled)",
    url="https://github.com/epic-kitchens/epic-kitchens-download-scripts (+ epic-kitchens-100-annotations)",
    protocols=("official",), prepare=prepare,
    notes="EPIC-55 videos have no IMU and are skipped; test-split videos have no labels and are skipped")
