"""Fuzz mutators of a recording's IMU CSV and labels.csv (tests/fuzzgen.py): headers, rows, times,
non-finite cells, field counts, intervals, bad bytes, and harmless variations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np

from fuzzgen_core import Mutation, _pick, _rand_bytes

# ==================================================================================== IMU CSV
def _imu_edit(name: str, fn: Callable[[list[str], np.random.Generator], str | bytes], rng, expect: str) -> Mutation:
    """A mutation of the IMU CSV's lines (header first, no line ends); the file named in meta.json."""
    seed = int(rng.integers(1 << 30))

    def apply(rec: Path) -> None:
        meta = json.loads((rec / "meta.json").read_text())
        f = next(s["file"] for s in meta["streams"].values() if s.get("kind") == "imu")
        p = rec / f
        out = fn(p.read_text().splitlines(), np.random.default_rng(seed))
        p.write_bytes(out if isinstance(out, bytes) else out.encode("utf-8"))
    return Mutation(name, apply, expect, "imu.csv")


def _join(lines: list[str], end: str = "\n") -> str:
    return end.join(lines) + end


def _row(lines, r) -> int:
    return 1 + int(r.integers(len(lines) - 1))


def imu_valid(rng) -> Mutation:
    how = _pick(rng, ["crlf", "no_final_newline", "spaces_after_comma", "more_digits", "extra_blank_end"])

    def fn(lines, r):
        if how == "crlf":
            return _join(lines, "\r\n")
        if how == "no_final_newline":
            return "\n".join(lines)
        if how == "spaces_after_comma":
            return _join([lines[0]] + [ln.replace(",", ", ") for ln in lines[1:]])
        if how == "more_digits":
            return _join([lines[0]] + [",".join(f"{float(x):.9f}" for x in ln.split(",")) for ln in lines[1:]])
        return _join(lines) + "\n"
    return _imu_edit(f"imu_valid={how}", fn, rng, "either" if how in ("spaces_after_comma", "extra_blank_end")
                     else "success")


def imu_nonfinite(rng) -> Mutation:
    val = _pick(rng, ["inf", "-inf", "Infinity", "1e39", "-1e39", "1e308", "3.5e38", "nan", "NaN", ""])
    run = int(_pick(rng, [1, 1, 5, 200]))

    def fn(lines, r):
        i = _row(lines, r)
        col = 1 + int(r.integers(len(lines[0].split(",")) - 1))
        for k in range(i, min(i + run, len(lines))):
            cells = lines[k].split(",")
            cells[col] = val
            lines[k] = ",".join(cells)
        return _join(lines)
    return _imu_edit(f"imu_nonfinite={val or 'empty'}x{run}", fn, rng, "either")


def imu_time(rng) -> Mutation:
    what = _pick(rng, ["ns_int", "ms", "swap_rows", "dup_row", "dup_time", "decreasing", "t_nan", "t_inf",
                       "huge_last", "huge_first", "all_same", "t_1e300"])
    expect = {"ns_int": "either", "ms": "either", "huge_last": "either", "huge_first": "either"}.get(what, "error")

    def fn(lines, r):
        rows = [ln.split(",") for ln in lines[1:]]
        i = int(r.integers(1, len(rows) - 1))
        if what == "ns_int":
            for c in rows:
                c[0] = str(int(round((float(c[0]) + 1000.0) * 1e9)))
        elif what == "ms":
            for c in rows:
                c[0] = f"{float(c[0]) * 1000:.3f}"
        elif what == "swap_rows":
            rows[i], rows[i + 1] = rows[i + 1], rows[i]
        elif what == "dup_row":
            rows.insert(i, list(rows[i]))
        elif what == "dup_time":
            rows[i + 1][0] = rows[i][0]
        elif what == "decreasing":
            rows.reverse()
        elif what == "t_nan":
            rows[i][0] = "nan"
        elif what == "t_inf":
            rows[i][0] = "inf"
        elif what == "huge_last":
            rows[-1][0] = "1e12"
        elif what == "huge_first":
            rows[0][0] = "-1e12"
        elif what == "all_same":
            for c in rows:
                c[0] = "1.0"
        else:
            rows[-1][0] = "1e300"
        return _join([lines[0]] + [",".join(c) for c in rows])
    return _imu_edit(f"imu_time={what}", fn, rng, expect)


def imu_header(rng) -> Mutation:
    what = _pick(rng, ["rename_t", "dup_channel", "drop_header_cell", "extra_header_cell", "no_header",
                       "upper_channels", "drop_column", "extra_column", "quoted_header", "empty_header_cell"])
    expect = {"upper_channels": "either", "drop_column": "either", "extra_column": "either",
              "quoted_header": "either"}.get(what, "error")

    def fn(lines, r):
        h = lines[0].split(",")
        rows = [ln.split(",") for ln in lines[1:]]
        j = 1 + int(r.integers(len(h) - 1))
        if what == "rename_t":
            h[0] = "time"
        elif what == "dup_channel":
            h[j] = h[1 if j != 1 else 2]
        elif what == "drop_header_cell":
            del h[j]
        elif what == "extra_header_cell":
            h.append("mag_x")
        elif what == "no_header":
            h = rows.pop(0)
        elif what == "upper_channels":
            h = [h[0]] + [c.upper() for c in h[1:]]
        elif what == "drop_column":
            del h[j]
            for c in rows:
                del c[j]
        elif what == "extra_column":
            h.append("temp")
            for c in rows:
                c.append("21.5")
        elif what == "quoted_header":
            h = [f'"{c}"' for c in h]
        else:
            h[j] = ""
        return _join([",".join(h)] + [",".join(c) for c in rows])
    return _imu_edit(f"imu_header={what}", fn, rng, expect)


def imu_rows(rng) -> Mutation:
    what = _pick(rng, ["comment", "text_cell", "ragged_long", "ragged_short", "blank_middle", "semicolons",
                       "hex_cell", "nul_cell", "unicode_minus", "underscore_number"])
    expect = {"blank_middle": "either", "underscore_number": "either"}.get(what, "error")

    def fn(lines, r):
        i = _row(lines, r)
        cells = lines[i].split(",")
        j = 1 + int(r.integers(len(cells) - 1))
        if what == "comment":
            lines.insert(i, "# sensor re-calibrated here")
        elif what == "text_cell":
            cells[j] = "abc"
        elif what == "ragged_long":
            cells.append("1.0")
        elif what == "ragged_short":
            del cells[j]
        elif what == "blank_middle":
            lines.insert(i, "")
        elif what == "semicolons":
            return _join([ln.replace(",", ";") for ln in lines])
        elif what == "hex_cell":
            cells[j] = "0x1p3"
        elif what == "nul_cell":
            cells[j] = "1\x002"
        elif what == "unicode_minus":
            cells[j] = "\u22121.5"
        else:
            cells[j] = "1_000"
        if what not in ("comment", "blank_middle"):
            lines[i] = ",".join(cells)
        return _join(lines)
    return _imu_edit(f"imu_rows={what}", fn, rng, expect)


def imu_bytes(rng) -> Mutation:
    what = _pick(rng, ["empty", "header_only", "one_row", "two_rows", "random", "truncate", "bom", "latin1",
                       "utf16", "random_tail"])
    frac = float(rng.uniform(0.1, 0.95))
    expect = {"bom": "either", "truncate": "either", "latin1": "either", "two_rows": "either"}.get(what, "error")

    def fn(lines, r):
        text = _join(lines)
        if what == "empty":
            return b""
        if what == "header_only":
            return _join(lines[:1])
        if what == "one_row":
            return _join(lines[:2])
        if what == "two_rows":
            return _join(lines[:3])
        if what == "random":
            return _rand_bytes(r, int(r.integers(1, 4000)))
        if what == "truncate":
            return text[: int(len(text) * frac)]
        if what == "bom":
            return b"\xef\xbb\xbf" + text.encode()
        if what == "latin1":
            return (text + "").encode("latin-1")
        if what == "utf16":
            return text.encode("utf-16")
        return text.encode() + _rand_bytes(r, 300)
    return _imu_edit(f"imu_bytes={what}", fn, rng, expect)


# ==================================================================================== labels.csv
#: the base recording's span on the recording clock (the harness checks its base against this)
LABEL_SPAN_S = (0.0, 4.0)


def _labels_edit(name: str, text_fn: Callable[[np.random.Generator], str | bytes], rng, expect: str) -> Mutation:
    seed = int(rng.integers(1 << 30))

    def apply(rec: Path) -> None:
        out = text_fn(np.random.default_rng(seed))
        (rec / "labels.csv").write_bytes(out if isinstance(out, bytes) else out.encode("utf-8"))
    return Mutation(name, apply, expect, "labels.csv")


def _segments(r, n: int) -> list[tuple[float, float, str]]:
    """``n`` non-overlapping segments inside LABEL_SPAN_S (rounded to ms), in time order."""
    lo, hi = LABEL_SPAN_S
    cuts = np.sort(r.uniform(lo + 0.05, hi - 0.05, 2 * n))
    cuts = np.round(cuts, 3)
    segs = []
    for k in range(n):
        a, b = float(cuts[2 * k]), float(cuts[2 * k + 1])
        if b > a:
            segs.append((a, b, _pick(r, ["drink", "eat", "stir", "wave"])))
    return segs or [(0.5, 3.5, "drink")]


def _labels_text(segs, end="\n", header="start,end,label") -> str:
    return end.join([header] + [f"{a},{b},{c}" for a, b, c in segs]) + end


def labels_valid(rng) -> Mutation:
    how = _pick(rng, ["plain", "crlf", "unsorted", "whole_span", "touching", "unicode_class"])

    def fn(r):
        # one segment over [1, 3] s, where the windows that cover every stream lie, and small ones beside it
        main = (round(float(r.uniform(0.3, 0.9)), 3), round(float(r.uniform(3.1, 3.6)), 3), "drink")
        segs = [(0.05, 0.25, "eat")][: int(r.integers(2))] + [main] + [(3.7, 3.95, "stir")][: int(r.integers(2))]
        if how == "crlf":
            return _labels_text(segs, "\r\n")
        if how == "unsorted":
            return _labels_text(list(reversed(segs)))
        if how == "whole_span":
            return _labels_text([(0.0, 4.0, "drink")])
        if how == "touching":
            return _labels_text([(0.2, 2.0, "drink"), (2.0, 3.8, "eat")])
        if how == "unicode_class":
            return _labels_text([(0.2, 3.8, "trinken_ü")])
        return _labels_text(segs)
    return _labels_edit(f"labels_valid={how}", fn, rng, "either" if how == "unsorted" else "success")


def labels_fields(rng) -> Mutation:
    what = _pick(rng, ["four_fields", "two_fields", "one_field", "empty_row", "no_header", "header_extra",
                       "header_renamed", "quoted_comma_label", "empty_label", "spaces"])
    expect = {"empty_row": "either", "quoted_comma_label": "either", "empty_label": "either",
              "spaces": "either"}.get(what, "error")

    def fn(r):
        segs = _segments(r, 2)
        rows = [f"{a},{b},{c}" for a, b, c in segs]
        header = "start,end,label"
        if what == "four_fields":
            rows[0] += ",extra"
        elif what == "two_fields":
            rows[0] = rows[0].rsplit(",", 1)[0]
        elif what == "one_field":
            rows[0] = rows[0].split(",", 1)[0]
        elif what == "empty_row":
            rows.insert(1, "")
        elif what == "no_header":
            return "\n".join(rows) + "\n"
        elif what == "header_extra":
            header += ",note"
        elif what == "header_renamed":
            header = "from,to,class"
        elif what == "quoted_comma_label":
            rows[0] = rows[0].rsplit(",", 1)[0] + ',"drink, slowly"'
        elif what == "empty_label":
            rows[0] = rows[0].rsplit(",", 1)[0] + ","
        else:
            rows = [x.replace(",", " , ") for x in rows]
        return "\n".join([header] + rows) + "\n"
    return _labels_edit(f"labels_fields={what}", fn, rng, expect)


def labels_times(rng) -> Mutation:
    what = _pick(rng, ["reversed", "zero_length", "overlap", "after_end", "negative", "nan", "inf", "text",
                       "huge", "dup_rows", "nested"])

    def fn(r):
        if what == "reversed":
            return _labels_text([(3.0, 1.0, "drink")])
        if what == "zero_length":
            return _labels_text([(1.0, 1.0, "drink"), (1.5, 3.0, "eat")])
        if what == "overlap":
            return _labels_text([(0.5, 2.5, "drink"), (2.0, 3.5, "eat")])
        if what == "after_end":
            return _labels_text([(1.0, 100.0, "drink")])
        if what == "negative":
            return _labels_text([(-5.0, 2.0, "drink")])
        if what == "nan":
            return "start,end,label\nnan,2.0,drink\n"
        if what == "inf":
            return "start,end,label\n0.5,inf,drink\n"
        if what == "text":
            return "start,end,label\nabc,2.0,drink\n"
        if what == "huge":
            return "start,end,label\n0.5,1" + "0" * 5000 + ",drink\n"
        if what == "dup_rows":
            return _labels_text([(0.5, 2.0, "drink"), (0.5, 2.0, "drink")])
        return _labels_text([(0.5, 3.5, "drink"), (1.0, 2.0, "eat")])
    return _labels_edit(f"labels_times={what}", fn, rng, "error")


def labels_bytes(rng) -> Mutation:
    what = _pick(rng, ["random", "empty", "header_only", "latin1", "utf16", "nul", "bom", "truncate"])
    expect = {"bom": "either", "header_only": "either", "truncate": "either"}.get(what, "error")
    frac = float(rng.uniform(0.3, 0.99))

    def fn(r):
        text = _labels_text(_segments(r, 2))
        if what == "random":
            return _rand_bytes(r, int(r.integers(1, 2000)))
        if what == "empty":
            return b""
        if what == "header_only":
            return "start,end,label\n"
        if what == "latin1":
            return "start,end,label\n0.5,3.5,trinkén\n".encode("latin-1")
        if what == "utf16":
            return text.encode("utf-16")
        if what == "nul":
            return text.replace("\n", "\n\x00", 1)
        if what == "bom":
            return b"\xef\xbb\xbf" + text.encode()
        return text[: max(18, int(len(text) * frac))]
    return _labels_edit(f"labels_bytes={what}", fn, rng, expect)
