"""``--split official``: a dataset's own protocol (``splits.json``, written by ``dcat import`` and
carried into the shards folder by ``dcat preprocess``), so a result is comparable with published ones.

``splits.json``: ``{"source": ..., "default": NAME, "protocols": {NAME: {"train": [recording ids],
"val": [...] (optional), "test": [...]}}}``. Whole recordings are assigned; recordings a protocol
does not name are in no part. A protocol without ``val`` gets one from its training recordings:
``max(1, round(val_frac x n))`` of the n training subjects (drawn with the split's seed) when there
are three or more, else of the training recordings, so model selection never sees test data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipelines.core.bounded import load_json_file
from pipelines.core.errors import DcatError

SPLITS_NAME = "splits.json"


class ProtocolError(DcatError):
    """A dataset protocol (``splits.json``) that is missing, malformed, or does not name what is asked."""

PART_INDEX = {"train": 0, "val": 1, "test": 2}


def load_protocols(data_dir: Path) -> dict:
    """The shards folder's ``splits.json``, checked: ``{"default": name, "protocols": {...}}``."""
    path = Path(data_dir) / SPLITS_NAME if Path(data_dir).is_dir() else Path(data_dir).parent / SPLITS_NAME
    if not path.is_file():
        raise ProtocolError(f"{path}: no such file; --split official uses the protocol a dataset importer wrote "
                         "(`dcat import`), which `dcat preprocess` copies into the shards folder")
    try:
        doc = load_json_file(path, max_bytes=64 << 20)
    except DcatError as e:
        raise ProtocolError(f"{path}: {e}") from None
    prots = doc.get("protocols") if isinstance(doc, dict) else None
    if not isinstance(prots, dict) or not prots:
        raise ProtocolError(f"{path}: no 'protocols' object")
    for name, parts in prots.items():
        ok = isinstance(parts, dict) and set(parts) <= set(PART_INDEX) and {"train", "test"} <= set(parts)
        ok = ok and all(isinstance(v, list) and all(isinstance(i, str) for i in v) for v in parts.values())
        if not ok:
            raise ProtocolError(f"{path}: protocol {name!r}: give train, test (and optionally val) as lists of recording ids")
    return {"path": str(path), "default": doc.get("default") or next(iter(prots)), "protocols": prots}


def _val_from_train(shards, part: list[np.ndarray], frac: float, seed: int) -> str:
    train = [ri for ri, p in enumerate(part) if len(p) and p[0] == 0]
    subjects = sorted({shards.recordings[ri].subject for ri in train})
    rng = np.random.default_rng([seed, 0x0FF1])
    if len(subjects) >= 3:
        n = min(max(1, int(round(frac * len(subjects)))), len(subjects) - 1)
        val = set(subjects[i] for i in rng.permutation(len(subjects))[:n])
        for ri in train:
            if shards.recordings[ri].subject in val:
                part[ri][:] = 1
        return f"validation subjects (from the protocol's training subjects): {', '.join(sorted(val))}"
    if len(train) < 2:
        _refuse(f"the protocol's training part has {len(train)} recording(s): too few to hold out validation")
    n = min(max(1, int(round(frac * len(train)))), len(train) - 1)
    val = [train[i] for i in rng.permutation(len(train))[:n]]
    for ri in val:
        part[ri][:] = 1
    return f"validation recordings (from the protocol's training recordings): {len(val)} of {len(train)}"


def _refuse(msg: str):
    raise ProtocolError(msg)


def official_parts(shards, protocol: str | None, val_frac: float, seed: int) -> tuple[list[np.ndarray], list[str], str]:
    """Per recording of ``shards``, each window's part (0 train, 1 val, 2 test, -1 none) under the
    protocol (default: the file's), notes, and the protocol's name."""
    doc = load_protocols(shards.data_dir)
    name = protocol or doc["default"]
    if name not in doc["protocols"]:
        _refuse(f"{doc['path']}: no protocol {name!r}; the file has {', '.join(doc['protocols'])} (--protocol)")
    where = {}
    for pname, ids in doc["protocols"][name].items():
        for rid in ids:
            if rid in where and where[rid] != pname:
                _refuse(f"{doc['path']}: protocol {name!r} puts {rid} in both {where[rid]} and {pname}")
            where[rid] = pname
    part = [np.full(len(r.start_s), PART_INDEX.get(where.get(r.recording_id), -1), dtype=np.int64)
            for r in shards.recordings]
    unnamed = [r.recording_id for r in shards.recordings if r.recording_id not in where]
    notes = [f"protocol {name!r} from {doc['path']}"]
    if unnamed:
        notes.append(f"{len(unnamed)} recording(s) the protocol does not name are in no part: {', '.join(unnamed[:10])}"
                     + (" ..." if len(unnamed) > 10 else ""))
    if "val" not in doc["protocols"][name] and val_frac > 0:
        notes.append(_val_from_train(shards, part, val_frac, seed))
    return part, notes, name
