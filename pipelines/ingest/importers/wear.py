"""WEAR (Bock et al., IMWUT 2024), as downloaded -> dcat raw layout (``dcat import wear``).

What the dataset holds (``raw/`` and ``annotations/`` of the download):

* ``raw/inertial/50hz/sbj_<n>.csv``: one file per subject, header ``sbj_id,right_arm_acc_x,...,
  right_leg_..., left_leg_..., left_arm_acc_z,label``: four Bangle.js watches (wrists, ankles) resampled
  by the authors onto one 20 ms grid (no time column: ``t = row / 50``), accelerometer only, in g
  (the watches record "50Hz +-8g"; the scripts do not rescale), and the per-sample activity label
  (``null``/empty: no activity);
* ``raw/<video folder>/sbj_<n>.mp4``: the head-mounted GoPro video (1080p, 60 fps), cropped to the
  length of the inertial data (synchronized by hand: one clock, offset 0); the folder name is not
  documented, so ``sbj_<n>.mp4`` is searched anywhere in the download;
* ``annotations/<fps>fps/wear_split_<k>.json`` (and ``wear_test_split_<k>.json`` ...): THUMOS-style
  ``{"database": {"sbj_<n>": {"subset": "Training"|"Validation", "duration", "fps", "annotations":
  [{"label", "segment": [start_s, end_s], ...}]}}}``; ``wear_split_k`` holds ``sbj_{k-1}`` out (LOSO).

What the import writes: one recording per subject, ``sbj_<n>/``: ``video.mp4`` (hard-linked, never
re-encoded; an ``audio`` stream reads the same container when it has an audio track), ``imu.csv``
(12 channels ``right_arm_acc_x``..., in m/s^2, ``source_units`` g, ``rate_hz`` 50, one clock
``watches``) and ``labels.csv``. Segments come from the CSV ``label`` column by run-length
(``[first/50, (last+1)/50]``), not from the JSON: the authors' converter (``data_creation/utils.py::
convert_labels_to_annotation_json``) starts every run after a label change one sample late and never
writes a file's last run; the import counts both differences per subject (``annotation_check``) and
reports them. ``labels="json"`` (Python API) takes the JSON segments as released instead, and a
subject without an inertial CSV falls back to them. ``background="null"`` also labels the
unlabelled stretches (the authors' class 0).

Protocols: every split JSON found becomes a protocol named after its file (``wear_split_1`` ...):
``Training`` -> train, ``Validation`` -> test (the held-out subject the authors evaluate on; with a
``Test`` subset present, ``Validation`` -> val and ``Test`` -> test). Without split files:
``loso-<subject>`` for each imported subject.

Sources: ``mariusbock/wear@65cb6c4fda912dbce9b243e67d8a9bc73f4d87ba``: README.md (download, folders,
22 participants), docs/index.html (50 Hz +-8 g, 1080p@60 fps GoPro), data_creation/README.md (sync, crop
to the inertial length), data_creation/3_create_raw_inertial_dataset.py (CSV header),
data_creation/utils.py (label_dict, ``null`` labels, 20 ms grid, the JSON converter),
data_creation/4_create_features_and_annotations.py (split JSONs: subset, duration = rows / 50),
main.py and configs/ (``subset`` use, ``sens_folder: ./data/wear/raw/inertial/50hz``).
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np

from pipelines.ingest.importers.base import (G, DatasetImportError, DatasetInfo, ImportReport, RecordingWriter,
                                             write_splits)

RATE = 50.0
PLACES = ("right_arm", "right_leg", "left_leg", "left_arm")
CHANNELS = [f"{p}_acc_{a}" for p in PLACES for a in "xyz"]
CLASSES = ("jogging", "jogging (rotating arms)", "jogging (skipping)", "jogging (sidesteps)", "jogging (butt-kicks)",
           "stretching (triceps)", "stretching (lunging)", "stretching (shoulders)", "stretching (hamstrings)",
           "stretching (lumbar rotation)", "push-ups", "push-ups (complex)", "sit-ups", "sit-ups (complex)",
           "burpees", "lunges", "lunges (complex)", "bench-dips")
NULLS = {"", "null", "nan", "none"}
_SBJ = re.compile(r"^sbj_(\d+)$")


def _sbj_key(name: str) -> tuple[int, str]:
    m = _SBJ.match(name)
    return (int(m.group(1)) if m else 10**9, name)


def scan(src: Path) -> tuple[dict[str, Path], dict[str, Path], list[Path]]:
    """Inertial CSVs and videos by subject (``sbj_<n>``), and the annotation JSONs of one fps folder
    (``60fps`` when there, else the folder with the most)."""
    csvs: dict[str, Path] = {}
    videos: dict[str, Path] = {}
    jsons: dict[Path, list[Path]] = {}
    for p in sorted(src.rglob("*")):
        if not p.is_file():
            continue
        stem, ext = p.stem, p.suffix.lower()
        if ext == ".csv" and _SBJ.match(stem) and "processed" not in p.parts:
            csvs.setdefault(stem, p)
        elif ext == ".mp4" and _SBJ.match(stem):
            videos.setdefault(stem, p)
        elif ext == ".json" and stem.startswith("wear_"):
            jsons.setdefault(p.parent, []).append(p)
    folder = next((d for d in jsons if d.name == "60fps"), None) or max(jsons, key=lambda d: len(jsons[d]),
                                                                         default=None)
    return csvs, videos, (sorted(jsons[folder], key=lambda q: _split_order(q.stem)) if folder else [])


def _split_order(stem: str) -> tuple:
    m = re.match(r"^(.*?)(\d+)$", stem)
    return (m.group(1), int(m.group(2))) if m else (stem, -1)


def read_inertial(path: Path) -> tuple[np.ndarray, list[str] | None]:
    """([N, 12] accelerations in g in CHANNELS order, per-row labels or None); the columns are found by
    header name, not position. Raises ValueError on a missing column or a non-numeric cell."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = csv.reader(f)
        head = [c.strip() for c in next(rows, [])]
        absent = [c for c in CHANNELS if c not in head]
        if absent:
            raise ValueError(f"columns {absent} not in the header ({', '.join(head[:14])})")
        idx = [head.index(c) for c in CHANNELS]
        li = head.index("label") if "label" in head else None
        vals, labels = [], []
        for n, row in enumerate(rows, start=2):
            if not row:
                continue
            try:
                vals.append([float(row[i]) if row[i].strip() else np.nan for i in idx])
            except (ValueError, IndexError):
                raise ValueError(f"line {n}: non-numeric or missing acceleration") from None
            if li is not None:
                labels.append(row[li].strip() if li < len(row) else "")
    return np.asarray(vals, dtype=np.float64).reshape(-1, len(CHANNELS)), (labels if li is not None else None)


def runs(labels: list[str], background: str | None = None) -> list[tuple[float, float, str]]:
    """Segments ``(first/50, (last+1)/50, label)`` of the runs of equal labels; unlabelled rows are left out
    (or labelled ``background``)."""
    out = []
    i, n = 0, len(labels)
    while i < n:
        j = i
        while j + 1 < n and labels[j + 1] == labels[i]:
            j += 1
        lab = labels[i]
        if lab.lower() in NULLS:
            lab = background
        if lab:
            out.append((i / RATE, (j + 1) / RATE, lab))
        i = j + 1
    return out


def load_json(path: Path) -> dict:
    doc = json.loads(path.read_text(encoding="utf-8"))
    db = doc.get("database") if isinstance(doc, dict) else None
    if not isinstance(db, dict):
        raise ValueError("no 'database' object")
    return db


def json_segments(entry: dict) -> list[tuple[float, float, str]]:
    return [(float(a["segment"][0]), float(a["segment"][1]), str(a["label"])) for a in entry.get("annotations", [])]


def compare(csv_segs: list, js_segs: list) -> dict:
    """How the released JSON segments differ from the CSV's runs (the authors' converter quirks)."""
    late = missing = 0
    by_end = {(round(b, 4), c): a for a, b, c in js_segs}
    for a, b, c in csv_segs:
        start = by_end.get((round(b, 4), c))
        if start is None:
            missing += 1
        elif abs(start - a - 1 / RATE) < 1e-6:
            late += 1
    return {"csv_segments": len(csv_segs), "json_segments": len(js_segs), "json_start_one_sample_late": late,
            "csv_runs_missing_from_json": missing}


def _has_audio(path: Path) -> bool:
    import av

    try:
        with av.open(str(path)) as c:
            return bool(c.streams.audio)
    except (OSError, ValueError, av.FFmpegError):
        return False


def protocols_from(jsons: dict[str, dict], written: set[str]) -> dict[str, dict[str, list[str]]]:
    """One protocol per split file: Training -> train, Validation -> test (or val when Test exists)."""
    out = {}
    for name, db in jsons.items():
        subsets = {s: [k for k, v in db.items() if isinstance(v, dict) and str(v.get("subset", "")).lower() == s
                       and k in written] for s in ("training", "validation", "test")}
        has_test = any(str(v.get("subset", "")).lower() == "test" for v in db.values() if isinstance(v, dict))
        parts = {"train": subsets["training"], "test": subsets["test"] if has_test else subsets["validation"]}
        if has_test and subsets["validation"]:
            parts["val"] = subsets["validation"]
        if parts["train"] and parts["test"]:
            out[name] = parts
    return out


def _write(out: Path, sbj: str, media: str, video: Path | None, acc: np.ndarray | None,
           segs: list, extra: dict) -> str:
    w = RecordingWriter(out, sbj, sbj, media)
    if video is not None:
        w.add_media("video", "video", video, filename="video.mp4")
        if _has_audio(video):
            w.add_media("audio", "audio", video, filename="video.mp4")
    if acc is not None:
        t = np.arange(len(acc)) / RATE
        w.add_imu("imu", t, acc * G, CHANNELS, {c: "m/s^2" for c in CHANNELS},
                  source_units={c: "g" for c in CHANNELS}, rate_hz=RATE, clock="watches",
                  roles={c: "acc" for c in CHANNELS},
                  devices="Bangle.js v1 watches: right wrist (right_arm), right ankle (right_leg), left ankle "
                          "(left_leg), left wrist (left_arm)")
    w.set_segments(segs)
    return w.save(dataset="wear", **extra)


def prepare(src: Path, out: Path, subjects: list[str] | None = None, media: str = "link", labels: str = "csv",
            background: str | None = None, **options) -> ImportReport:
    """Import WEAR under ``src`` into ``out``; ``labels``: ``csv`` (runs of the label column) or ``json``."""
    if labels not in ("csv", "json"):
        raise DatasetImportError(f"labels={labels!r}: choose csv or json")
    src, out = Path(src), Path(out)
    rep = ImportReport("wear", str(out))
    csvs, videos, json_files = scan(src)
    if not csvs and not videos:
        raise DatasetImportError(f"{src}: no WEAR subject found (expected raw/inertial/50hz/sbj_<n>.csv and/or "
                                 "sbj_<n>.mp4)")
    dbs: dict[str, dict] = {}
    for p in json_files:
        try:
            dbs.setdefault(p.stem, load_json(p))
        except (ValueError, OSError) as e:
            rep.notes.append(f"{p.name}: not read ({e})")
    want = {s if s.startswith("sbj_") else f"sbj_{s}" for s in subjects} if subjects else None
    late = missing = 0
    norms: list[float] = []
    seen: set[str] = set()
    for sbj in sorted(set(csvs) | set(videos), key=_sbj_key):
        if want is not None and sbj not in want:
            continue
        entry = next((db[sbj] for db in dbs.values() if isinstance(db.get(sbj), dict)), None)
        js = json_segments(entry) if entry else None
        acc, lab, extra = None, None, {}
        if sbj in csvs:
            try:
                acc, lab = read_inertial(csvs[sbj])
            except (ValueError, OSError, UnicodeDecodeError) as e:
                if sbj not in videos or js is None:
                    rep.skip(sbj, str(csvs[sbj]), f"inertial CSV not read: {e}")
                    continue
                extra["missing_streams"] = {"imu": f"{csvs[sbj].name} not read: {e}"}
        if lab is not None:
            segs = runs(lab, background)
            extra["label_source"] = "inertial CSV label column (runs)"
            if js is not None:
                chk = compare(runs(lab), js)
                extra["annotation_check"] = chk
                late += chk["json_start_one_sample_late"]
                missing += chk["csv_runs_missing_from_json"]
        elif js is not None:
            segs, extra["label_source"] = js, "annotation JSON"
        else:
            rep.skip(sbj, str(csvs.get(sbj) or videos.get(sbj)), "no labels: no label column and no annotation JSON")
            continue
        if labels == "json" and js is not None:
            segs, extra["label_source"] = js, "annotation JSON"
        if acc is not None:
            norms.append(float(np.nanmedian(np.linalg.norm(acc[:, :3], axis=1))))
            extra["duration_s"] = len(acc) / RATE
        else:
            extra.setdefault("missing_streams", {}).setdefault("imu", "no inertial CSV")
        if sbj not in videos:
            extra.setdefault("missing_streams", {})["video"] = "no sbj_<n>.mp4 found"
        seen |= {c for _, _, c in segs}
        try:
            rep.written.append(_write(out, sbj, media, videos.get(sbj), acc, segs, extra))
        except (ValueError, OSError) as e:
            rep.skip(sbj, None, str(e))
    no_video = [r for r in rep.written if r not in videos]
    if no_video:
        rep.notes.append(f"{len(no_video)} subjects imported without video (no sbj_<n>.mp4 found): "
                         + ", ".join(no_video))
    if late or missing:
        rep.notes.append(f"labels from the CSV label column; the released JSONs start {late} segments one sample "
                         f"(20 ms) late and lack {missing} runs (a file's last run) — see annotation_check")
    if norms:
        med = float(np.median(norms))
        rep.notes.append(f"right-arm median |acc| {med:.3f} g over {len(norms)} subjects"
                         + ("" if 0.7 < med < 1.3 else " (not ~1 g: check the unit)"))
    unknown = sorted(seen - set(CLASSES) - {background})
    if unknown:
        rep.notes.append(f"labels outside the 18 WEAR classes: {', '.join(unknown)}")
    written = set(rep.written)
    prot = protocols_from(dbs, written) if dbs else {
        f"loso-{s}": {"train": sorted(written - {s}), "test": [s]} for s in sorted(written, key=_sbj_key)
        if len(written) > 1}
    dropped = sorted(set(dbs) - set(prot), key=_split_order) if dbs else []
    if dropped:
        rep.notes.append(f"protocols not written (no train or no test subject imported): {', '.join(dropped)}")
    if prot:
        src_text = ("WEAR: the authors' split files (annotations/*/wear_*.json; Training -> train, Validation -> test)"
                    if dbs else "WEAR: leave-one-subject-out over the imported subjects (no split files found)")
        rep.protocols = write_splits(out, prot, source=src_text)
    return rep


INFO = DatasetInfo(
    name="wear", title="WEAR (outdoor sports, egocentric video + 4 wrist/ankle accelerometers)",
    modalities="video (+ audio) + 4 accelerometers (12 ch, 50 Hz)", subjects="18-22 (sbj_0..)",
    classes="18 workout activities (segments)",
    url="https://bit.ly/wear_dataset (https://mariusbock.github.io/wear/, CC BY-NC-SA 4.0)",
    protocols=("wear_split_1..18 (LOSO, the authors' files)", "loso-<subject> without them"), prepare=prepare,
    notes="segments from the CSV label column (the released JSONs start runs one sample late and drop the last run)")
