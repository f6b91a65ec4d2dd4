"""Fuzz mutators of a recording's meta.json (tests/fuzzgen.py): non-finite and huge numbers, wrong types,
missing keys, deep nesting, hostile strings, bad bytes, bad stream entries, and harmless variations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np

from fuzzgen_core import Mutation, _pick, _rand_bytes

# ==================================================================================== meta.json
def _meta_edit(name: str, fn: Callable[[dict], dict | str | bytes], expect: str = "either") -> Mutation:
    """A mutation of the parsed meta.json: ``fn(meta)`` returns the new dict, or the file's raw text/bytes."""
    def apply(rec: Path) -> None:
        p = rec / "meta.json"
        out = fn(json.loads(p.read_text()))
        if isinstance(out, dict):
            out = json.dumps(out, indent=1)
        p.write_bytes(out if isinstance(out, bytes) else out.encode("utf-8"))
    return Mutation(name, apply, expect, "meta.json")


_NONFINITE_TEXT = ("NaN", "Infinity", "-Infinity", "1e400", "-1e400")


def _raw_number(meta: dict, path: tuple, text: str) -> str:
    """meta.json text with the value at ``path`` replaced by the raw JSON number text ``text``."""
    marker = "__FUZZ_NUMBER__"
    d = meta
    for k in path[:-1]:
        d = d[k]
    d[path[-1]] = marker
    return json.dumps(meta, indent=1).replace(f'"{marker}"', text)


def _imu_path(meta: dict) -> tuple:
    name = next(k for k, s in meta["streams"].items() if s.get("kind") == "imu")
    return ("streams", name)


def meta_valid(rng) -> Mutation:
    how = _pick(rng, ["minify", "extra_keys", "reorder", "unicode_subject", "crlf_indent"])

    def fn(m):
        if how == "minify":
            return json.dumps(m, separators=(",", ":"))
        if how == "extra_keys":
            m["lab_notes"] = {"room": "B12", "tags": ["a", "b"], "n": 3}
            m["streams"][_imu_path(m)[1]]["sensor_model"] = "XYZ-1"
            return m
        if how == "reorder":
            return dict(reversed(list(m.items())))
        if how == "unicode_subject":
            m["subject"] = "Zoë Müller 李"
            return m
        return json.dumps(m, indent=3).replace("\n", "\r\n")
    return _meta_edit(f"meta_valid={how}", fn, "success")


def meta_nonfinite(rng) -> Mutation:
    key = _pick(rng, ["rate_hz", "clock_offset_s"])
    text = _pick(rng, list(_NONFINITE_TEXT))
    return _meta_edit(f"meta_nonfinite={key}:{text}",
                      lambda m: _raw_number(m, _imu_path(m) + (key,), text), "error")


def meta_huge_number(rng) -> Mutation:
    digits = int(_pick(rng, [400, 5000, 20000]))
    where = _pick(rng, ["rate_hz", "clock_offset_s", "extra"])
    text = "1" + "0" * digits

    def fn(m):
        if where == "extra":
            m["extra_number"] = 0
            return _raw_number(m, ("extra_number",), text)
        return _raw_number(m, _imu_path(m) + (where,), text)
    return _meta_edit(f"meta_huge_number={where}:{digits}digits", fn, "either" if where == "extra" else "error")


def meta_bad_rate(rng) -> Mutation:
    v = _pick(rng, [0, -100.0, 1e-300, 1e300, True, "100", None, [100]])
    return _meta_edit(f"meta_bad_rate={v!r}", lambda m: (m["streams"][_imu_path(m)[1]].__setitem__("rate_hz", v), m)[1],
                      "either" if v in (1e-300, 1e300) else "error")


def _walk(d, path=()):
    """Every (path, value) of a parsed JSON value."""
    yield path, d
    if isinstance(d, dict):
        for k, v in d.items():
            yield from _walk(v, path + (k,))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            yield from _walk(v, path + (i,))


def _set(d, path, v):
    for k in path[:-1]:
        d = d[k]
    d[path[-1]] = v


def meta_wrong_type(rng) -> Mutation:
    idx = int(rng.integers(1_000_000))
    repl = _pick(rng, [0, 1.5, -7, "x", "", [], {}, None, True, [1, 2], {"a": 1}])

    def fn(m):
        paths = [p for p, _ in _walk(m) if p and p[0] != "synth"]
        p = paths[idx % len(paths)]
        _set(m, p, repl)
        return m
    return _meta_edit(f"meta_wrong_type#{idx}={repl!r}", fn)


def meta_missing_key(rng) -> Mutation:
    idx = int(rng.integers(1_000_000))
    must = _pick(rng, ["subject", "streams", "kind", "file", None])

    def fn(m):
        if must in ("subject", "streams"):
            del m[must]
            return m
        if must in ("kind", "file"):
            del m["streams"][_imu_path(m)[1]][must]
            return m
        paths = [p for p, v in _walk(m) if p and isinstance(p[-1], str)]
        p = paths[idx % len(paths)]
        d = m
        for k in p[:-1]:
            d = d[k]
        del d[p[-1]]
        return m
    return _meta_edit(f"meta_missing_key={must or idx}", fn, "error" if must else "either")


def meta_deep(rng) -> Mutation:
    depth = int(_pick(rng, [64, 1000, 200_000]))
    where = _pick(rng, ["extra", "subject", "units"])
    nest = "[" * depth + "]" * depth if rng.random() < 0.5 else '{"a":' * depth + "1" + "}" * depth

    def fn(m):
        key = {"extra": ("deep",), "subject": ("subject",), "units": _imu_path(m) + ("units",)}[where]
        _set(m, key, "__DEEP__")
        return json.dumps(m).replace('"__DEEP__"', nest)
    return _meta_edit(f"meta_deep={where}:{depth}", fn, "either" if where == "extra" and depth < 1000 else "either")


def meta_strings(rng) -> Mutation:
    what = _pick(rng, ["long_subject", "nul_subject", "nul_file", "control_file", "unicode_file", "dotdot_file",
                       "abs_file", "empty_subject", "long_file"])

    def fn(m):
        s = m["streams"][_imu_path(m)[1]]
        if what == "long_subject":
            m["subject"] = "s" * 2_000_000
        elif what == "nul_subject":
            m["subject"] = "s\x0001"
        elif what == "nul_file":
            s["file"] = "imu\x00.csv"
        elif what == "control_file":
            s["file"] = "imu\n.csv"
        elif what == "unicode_file":
            s["file"] = "ïmü.csv"
        elif what == "dotdot_file":
            s["file"] = "../../etc/passwd"
        elif what == "abs_file":
            s["file"] = "/etc/passwd"
        elif what == "empty_subject":
            m["subject"] = ""
        else:
            s["file"] = "x" * 5000 + ".csv"
        return m
    expect = "either" if what == "long_subject" else "error"
    return _meta_edit(f"meta_strings={what}", fn, expect)


def meta_bytes(rng) -> Mutation:
    what = _pick(rng, ["truncate", "latin1", "utf16", "random", "empty", "bom", "nul_byte", "not_object"])
    frac = float(rng.uniform(0.05, 0.95))
    seed = int(rng.integers(1 << 30))

    def fn(m):
        text = json.dumps(m, indent=1)
        if what == "truncate":
            return text[: int(len(text) * frac)]
        if what == "latin1":
            m["subject"] = "Müller"
            return json.dumps(m, ensure_ascii=False).encode("latin-1")
        if what == "utf16":
            return text.encode("utf-16")
        if what == "random":
            return _rand_bytes(np.random.default_rng(seed), 700)
        if what == "empty":
            return b""
        if what == "bom":
            return b"\xef\xbb\xbf" + text.encode()
        if what == "nul_byte":
            i = int(len(text) * frac)
            return text[:i] + "\x00" + text[i:]
        return json.dumps([m])
    return _meta_edit(f"meta_bytes={what}", fn, "either" if what == "bom" else "error")


def meta_streams(rng) -> Mutation:
    what = _pick(rng, ["no_streams", "unknown_kind", "bad_name", "missing_file", "dup_file_two_imu",
                       "channels_mismatch", "dup_channels", "label_and_file"])

    def fn(m):
        name = _imu_path(m)[1]
        s = m["streams"][name]
        if what == "no_streams":
            m["streams"] = {}
        elif what == "unknown_kind":
            s["kind"] = "eeg"
        elif what == "bad_name":
            m["streams"]["1 bad name!"] = m["streams"].pop(name)
        elif what == "missing_file":
            s["file"] = "nope.csv"
        elif what == "dup_file_two_imu":
            m["streams"]["imu_b"] = dict(s)
            return m
        elif what == "channels_mismatch":
            s["channels"] = ["a", "b"]
        elif what == "dup_channels":
            s["channels"] = [s["channels"][0]] * len(s["channels"])
        else:
            m["label"] = 42
        return m
    return _meta_edit(f"meta_streams={what}", fn, "either" if what == "dup_file_two_imu" else "error")


def folder_name(rng) -> Mutation:
    """The recording folder renamed as lab folders are (issue 13, item 15: accept any name a file system allows)."""
    name = _pick(rng, ["rec ü 1", "s01 r01", "Aufnahme (2)", "李_01", "x" * 200, "-dash", "a'b\"c", "tab\there"])
    expect = "success" if name in ("rec ü 1", "s01 r01", "Aufnahme (2)", "李_01") else "either"

    def apply(rec: Path) -> None:
        rec.rename(rec.with_name(name))
    return Mutation(f"folder_name={name[:20]!r}", apply, expect, name)
