"""Fuzz mutators of shards and experiment specs (tests/fuzzgen.py)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from fuzzgen_core import Mutation, _pick, _rand_bytes

# ==================================================================================== shards
#: the stream every fuzz shard holds (tests/test_fuzz.py writes fake shards with video and imu)
SHARD_STREAM = "imu"


def _h5(name: str, fn: Callable, expect: str = "error") -> Mutation:
    """A mutation of one open shard: ``fn(h5py.File opened r+)``."""
    def apply(p: Path) -> None:
        import h5py

        with h5py.File(p, "r+") as f:
            fn(f)
    return Mutation(name, apply, expect, "")


def _replace(f, path: str, data=None, **kw) -> None:
    attrs = dict(f[path].attrs)
    del f[path]
    ds = f.create_dataset(path, data=data, **kw)
    for k, v in attrs.items():
        ds.attrs[k] = v


def shard_attrs(rng) -> Mutation:
    what = _pick(rng, ["n_windows_str", "n_windows_big", "n_windows_neg", "n_windows_float", "window_s_nan",
                       "window_s_neg", "stride_zero", "args_json_bad", "checks_json_bad", "meta_json_bad",
                       "sources_json_list", "enc_version", "enc_type", "drop_n_windows", "rate_nan",
                       "rate_zero", "spw_big", "channels_short", "args_json_deep", "recording_id_int"])

    def fn(f):
        s = f[f"streams/{SHARD_STREAM}"]
        if what == "n_windows_str":
            f.attrs["n_windows"] = "abc"
        elif what == "n_windows_big":
            f.attrs["n_windows"] = 10 ** 12
        elif what == "n_windows_neg":
            f.attrs["n_windows"] = -3
        elif what == "n_windows_float":
            f.attrs["n_windows"] = 2.5
        elif what == "window_s_nan":
            f.attrs["window_s"] = float("nan")
        elif what == "window_s_neg":
            f.attrs["window_s"] = -2.0
        elif what == "stride_zero":
            f.attrs["stride_s"] = 0.0
        elif what == "args_json_bad":
            f.attrs["args_json"] = "{not json"
        elif what == "checks_json_bad":
            f.attrs["checks_json"] = "["
        elif what == "meta_json_bad":
            f.attrs["meta_json"] = "NaN"
        elif what == "sources_json_list":
            f.attrs["sources_json"] = '{"a": 1}'
        elif what == "enc_version":
            f.attrs["encoding-version"] = "99"
        elif what == "enc_type":
            f["windows"].attrs["encoding-type"] = "something-else"
        elif what == "drop_n_windows":
            del f.attrs["n_windows"]
        elif what == "rate_nan":
            s.attrs["rate_hz"] = float("nan")
        elif what == "rate_zero":
            s.attrs["rate_hz"] = 0.0
        elif what == "spw_big":
            s.attrs["samples_per_window"] = 10 ** 9
        elif what == "channels_short":
            s.attrs["channels"] = ["a"]  # the stream group's list (the data's own attrs are not read)
        elif what == "args_json_deep":
            f.attrs["args_json"] = "[" * 100_000 + "]" * 100_000
        else:
            f.attrs["recording_id"] = 5
    return _h5(f"shard_attrs={what}", fn)


def shard_datasets(rng) -> Mutation:
    what = _pick(rng, ["start_short", "start_long", "start_str", "start_nan", "start_decl_huge", "ws_past_end",
                       "ws_negative", "ws_decreasing", "ws_float", "label_short", "label_int", "data_int8",
                       "data_nan", "data_inf", "data_empty", "data_1d", "no_windows", "no_data", "no_stream",
                       "mean_nan", "std_zero", "purity_bad", "count_neg", "end_before_start"])
    # a shard holding fewer streams is valid (a stale manifest.json may still list the stream)
    expect = {"std_zero": "either", "no_stream": "either"}.get(what, "error")

    def fn(f):
        w = f["windows"]
        s = f[f"streams/{SHARD_STREAM}"]
        n = w["start_s"].shape[0]
        if what == "start_short":
            _replace(f, "windows/start_s", w["start_s"][:-1])
        elif what == "start_long":
            _replace(f, "windows/start_s", np.concatenate([w["start_s"][:], [1e3]]))
        elif what == "start_str":
            _replace(f, "windows/start_s", np.array([b"x"] * n))
        elif what == "start_nan":
            a = w["start_s"][:]
            a[n // 2] = np.nan
            w["start_s"][:] = a
        elif what == "start_decl_huge":
            _replace(f, "windows/start_s", shape=(10 ** 10,), dtype="f8")
        elif what == "ws_past_end":
            a = s["window_start"][:]
            a[-1] = 10 ** 9
            s["window_start"][:] = a
        elif what == "ws_negative":
            a = s["window_start"][:]
            a[0] = -50
            s["window_start"][:] = a
        elif what == "ws_decreasing":
            s["window_start"][:] = s["window_start"][:][::-1]
        elif what == "ws_float":
            _replace(f, f"streams/{SHARD_STREAM}/window_start", s["window_start"][:] + 0.5)
        elif what == "label_short":
            _replace(f, "windows/label", w["label"][:][:-2], dtype=w["label"].dtype)
        elif what == "label_int":
            _replace(f, "windows/label", np.arange(n))
        elif what == "data_int8":
            _replace(f, f"streams/{SHARD_STREAM}/data", s["data"][:].astype(np.int8))
        elif what == "data_nan":
            a = s["data"][:]
            a[len(a) // 2, 0] = np.nan
            s["data"][:] = a
        elif what == "data_inf":
            a = s["data"][:]
            a[len(a) // 3, -1] = np.inf
            s["data"][:] = a
        elif what == "data_empty":
            _replace(f, f"streams/{SHARD_STREAM}/data", np.zeros((0, s["data"].shape[1]), np.float32))
        elif what == "data_1d":
            _replace(f, f"streams/{SHARD_STREAM}/data", s["data"][:][:, 0])
        elif what == "no_windows":
            del f["windows"]
        elif what == "no_data":
            del s["data"]
        elif what == "no_stream":
            del f[f"streams/{SHARD_STREAM}"]
        elif what == "mean_nan":
            s["mean"][:] = np.nan
        elif what == "std_zero":
            s["std"][:] = 0.0
        elif what == "purity_bad":
            w["label_purity"][:] = 7.0
        elif what == "count_neg":
            s["count"][()] = -1
        else:
            w["end_s"][:] = w["start_s"][:] - 1.0
    return _h5(f"shard_datasets={what}", fn, expect)


def shard_valid(rng) -> Mutation:
    """Harmless changes: every command must still succeed."""
    what = _pick(rng, ["extra_attrs", "repack"])

    def apply(p: Path) -> None:
        import h5py

        if what == "extra_attrs":
            with h5py.File(p, "r+") as f:
                f.attrs["lab_note"] = "checked by hand"
                f["windows"].attrs["note"] = 1
            return
        tmp = p.with_name(f".{p.name}.repack")  # a copy of every object into a fresh file (as h5repack)
        with h5py.File(p, "r") as src, h5py.File(tmp, "w") as dst:
            for k, v in src.attrs.items():
                dst.attrs[k] = v
            for name in src:
                src.copy(src[name], dst, name=name)
        tmp.replace(p)
    return Mutation(f"shard_valid={what}", apply, "success", "")


def shard_file(rng) -> Mutation:
    what = _pick(rng, ["truncate", "zero_bytes", "random", "stray_h5", "no_manifest", "flip_bytes",
                       "manifest_bad"])
    frac = float(rng.uniform(0.05, 0.95))
    seed = int(rng.integers(1 << 30))
    expect = {"no_manifest": "either"}.get(what, "error")

    def apply(p: Path) -> None:
        r = np.random.default_rng(seed)
        if what == "truncate":
            p.write_bytes(p.read_bytes()[: int(p.stat().st_size * frac)])
        elif what == "zero_bytes":
            p.write_bytes(b"")
        elif what == "random":
            p.write_bytes(_rand_bytes(r, p.stat().st_size))
        elif what == "stray_h5":
            (p.parent / "zz_stray.h5").write_bytes(_rand_bytes(r, 5000))
        elif what == "no_manifest":
            (p.parent / "manifest.json").unlink()
        elif what == "manifest_bad":
            (p.parent / "manifest.json").write_text('{"encoding-type": "dcat-manifest", "shards": 5')
        else:
            b = bytearray(p.read_bytes())
            for i in r.integers(0, len(b), 64):
                b[i] ^= 0xFF
            p.write_bytes(bytes(b))
    return Mutation(f"shard_file={what}", apply, expect, "")


# ==================================================================================== experiment specs
def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)  # a TOML basic string
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, _Raw):
        return v.text
    raise TypeError(v)


@dataclass
class _Raw:
    text: str


def spec_text(d: dict) -> str:
    """TOML text of a spec dict: top-level keys, then the ``[train]`` table."""
    table = isinstance(d.get("train"), dict)
    top = [f"{k} = {_toml_value(v)}" for k, v in d.items() if k != "train" or not table]
    train = [f"{k} = {_toml_value(v)}" for k, v in d["train"].items()] if table else []
    return "\n".join(top + (["", "[train]"] + train if table else [])) + "\n"


def _spec(name: str, fn: Callable[[dict], dict | str | bytes], expect: str) -> Mutation:
    """``fn(spec dict)`` returns the new dict or the raw text/bytes; written to the spec path."""
    def apply(p: Path) -> None:
        d = json.loads(p.with_suffix(".json").read_text())  # the harness stores the valid dict beside
        out = fn(d)
        if isinstance(out, dict):
            out = spec_text(out)
        p.write_bytes(out if isinstance(out, bytes) else out.encode("utf-8"))
    return Mutation(name, apply, expect, "spec.toml")


def spec_valid(rng) -> Mutation:
    how = _pick(rng, ["comments", "lambdas", "seeds", "whitespace", "reorder", "train_lr", "title_unicode"])

    def fn(d):
        if how == "comments":
            return "# my grid\n" + spec_text(d).replace("\n", "  # note\n", 2)
        if how == "lambdas":
            d["lambdas"] = [0.1, 10.0]
        elif how == "seeds":
            d["seeds"] = [1, 2]
        elif how == "whitespace":
            return spec_text(d).replace(" = ", "   =\t")
        elif how == "reorder":
            return dict(reversed([(k, v) for k, v in d.items() if k != "train"])) | {"train": d["train"]}
        elif how == "train_lr":
            d["train"]["lr"] = 0.003
        else:
            d["title"] = "Überblick: 视频 -> IMU"
        return d
    return _spec(f"spec_valid={how}", fn, "success")


#: (key, bad value) pairs a schema must refuse (types, ranges, non-finite numbers)
_SPEC_BAD_TOP = [
    ("data", 5), ("folds", 2.5), ("folds", 0), ("folds", -1), ("lambdas", 1), ("lambdas", [-1.0]),
    ("lambdas", [float("nan")]), ("lambdas", [float("inf")]), ("lambdas", ["a"]), ("seeds", 3), ("seeds", ["a"]),
    ("seeds", [1.5]), ("seeds", [-1]), ("train", 5), ("jobs", "two"), ("jobs", -1), ("temperature", 0.0),
    ("temperature", -1.0), ("baseline_lambda", float("nan")), ("baseline_lambda", float("inf")),
    ("shift_lambda", -1.0), ("id_folds", 0), ("id_folds", 1.5), ("split_seed", "x"), ("null", "yes"),
    ("mcma", [1]), ("splits", ["both"]), ("pairs", ["video"]), ("pairs", "video->imu"), ("methods", ["magic"]),
    ("shifts", [float("nan")]), ("shifts", [-0.5]), ("threads", 0), ("device", 3), ("title", 7),
    ("source_label_fraction", 2.0), ("seeds", [10 ** 30]), ("folds", 10 ** 30), ("lambdas", []), ("seeds", []),
]
# not here, being valid: [train] lr = 0 (no step moves a weight; tests/test_train.py uses it) and
# video_frames = 0 (every frame of the window)
_SPEC_BAD_TRAIN = [
    ("epochs", -1), ("epochs", 0), ("epochs", 1.5), ("epochs", "many"), ("lr", "fast"), ("lr", -1.0),
    ("lr", float("nan")), ("batch_size", 0), ("batch_size", -4), ("d", 0), ("d", 3.5), ("heads", 0), ("depth", -1),
    ("dropout", 1.5), ("dropout", float("nan")), ("label_fraction", 0.0), ("label_fraction", 2.0),
    ("val_frac", 1.5), ("test_frac", -0.1), ("patience", -1), ("grad_clip", float("inf")), ("block_s", 0.0),
    ("weight_decay", -1.0), ("epochs", 10 ** 30), ("epochs", True), ("lr", [0.1]),
    ("unknown_key", 1), ("epochs", {"a": 1}),
]


def spec_bad_value(rng) -> Mutation:
    table, k, v = _pick(rng, [("top", k, v) for k, v in _SPEC_BAD_TOP] + [("train", k, v) for k, v in _SPEC_BAD_TRAIN])
    if table == "top":
        return _spec(f"spec_bad={k}:{v!r}", lambda d: d | {k: v}, "error")
    return _spec(f"spec_bad_train={k}:{v!r}", lambda d: d | {"train": d["train"] | {k: v}}, "error")


def spec_structure(rng) -> Mutation:
    what = _pick(rng, ["unknown_top", "deep_array", "deep_table", "syntax", "truncate", "random_bytes", "latin1",
                       "nul", "long_string", "dup_key", "empty", "huge_int", "train_table_array", "nested_train"])
    frac = float(rng.uniform(0.2, 0.9))
    seed = int(rng.integers(1 << 30))
    depth = int(_pick(rng, [100, 5000, 100_000]))

    def fn(d):
        text = spec_text(d)
        if what == "unknown_top":
            return d | {"lambda": [1.0]}
        if what == "deep_array":
            return d | {"lambdas": _Raw("[" * depth + "]" * depth)}
        if what == "deep_table":
            return d | {"train": d["train"] | {"x": _Raw("{a = " * depth + "1" + "}" * depth)}}
        if what == "syntax":
            return text.replace("=", "==", 1)
        if what == "truncate":  # the cut falls at the same place whatever the length of the data path
            short = spec_text(d | {"data": "@D@"})
            return short[: int(len(short) * frac)].replace("@D@", d["data"])
        if what == "random_bytes":
            return _rand_bytes(np.random.default_rng(seed), 600)
        if what == "latin1":
            return (text + 'title = "Müller"\n').encode("latin-1")
        if what == "nul":
            return text.replace("\n", "\x00\n", 1)
        if what == "long_string":
            return d | {"title": "t" * 3_000_000}
        if what == "dup_key":
            return text.replace("\n", "\nseeds = [5]\n", 1)
        if what == "empty":
            return ""
        if what == "huge_int":
            return d | {"split_seed": _Raw("9" * 5000)}
        if what == "train_table_array":
            return text.replace("[train]", "[[train]]")
        return d | {"train": d["train"] | {"sub": {"epochs": 1}}}
    # a truncation at a line end can leave a valid spec
    expect = {"long_string": "either", "truncate": "either"}.get(what, "error")
    return _spec(f"spec_structure={what}", fn, expect)
