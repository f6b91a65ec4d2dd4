"""Choices the report makes per unit, from the rows alone: D-CAT's lambda and MCMA chosen on
validation, and runs whose results are identical to another run of the same unit.

- :func:`choose_on_validation`: per unit (split, fold, seed) and (tgt, src), the unshifted D-CAT run
  with the highest ``val_macro_f1``; ties go to the smaller lambda, then MCMA on, then the cell
  name. No test number is read, so the choice is what a user without the test labels would make.
- :func:`mark_identical`: per unit and target, a run whose results equal an earlier run's (same
  ``fingerprint``, a hash of its confusion matrices on every part; without one, the same test,
  validation and training scores) gets ``same_as`` = that run's cell, e.g. MCMA on and off when
  MCMA kept every window. The tables then show it once, not as a second confirmation.
- :func:`annotate`: both, as the ``same_as`` and ``val_chosen`` columns of new row dicts.
"""

from __future__ import annotations

import math

from pipelines.study.report.statistics import finite_or_none, is_shifted

_ROLE_ORDER = {"baseline": 0, "null": 1, "reference": 2, "transfer": 3, "source": 4}


def _unit(r: dict) -> tuple:
    return (r.get("split"), int(r.get("fold") or 0), r.get("seed"))


def _lam(r: dict) -> float:
    return math.inf if r.get("lam") is None else float(r["lam"])


def choose_on_validation(rows: list[dict]) -> dict:
    """(split, fold, seed, tgt, src) -> the D-CAT row chosen on validation (see the module)."""
    groups: dict = {}
    for r in rows:
        if (r.get("role") == "transfer" and r.get("method") == "dcat" and not is_shifted(r)
                and finite_or_none(r.get("val_macro_f1")) is not None):
            groups.setdefault((*_unit(r), r.get("tgt"), r.get("src") or ""), []).append(r)
    return {k: min(g, key=lambda r: (-finite_or_none(r["val_macro_f1"]), _lam(r), 0 if r.get("mcma") else 1,
                                     str(r.get("cell"))))
            for k, g in groups.items()}


def _result_key(r: dict):
    if r.get("fingerprint"):
        return ("fingerprint", r["fingerprint"])
    vals = tuple(finite_or_none(r.get(k)) for k in ("test_macro_f1", "test_acc", "val_macro_f1", "train_macro_f1"))
    return None if any(v is None for v in vals) else ("scores", vals)


def _order(r: dict) -> tuple:
    return (_ROLE_ORDER.get(r.get("role"), 5), r.get("method") or "", is_shifted(r), _lam(r),
            0 if r.get("mcma") else 1, str(r.get("cell")))


def mark_identical(rows: list[dict]) -> dict:
    """cell -> the earlier cell of the same unit and target with identical results (see the module)."""
    groups: dict = {}
    for r in rows:
        if r.get("role") != "source":
            groups.setdefault((*_unit(r), r.get("tgt")), []).append(r)
    out = {}
    for g in groups.values():
        first: dict = {}
        for r in sorted(g, key=_order):
            k = _result_key(r)
            if k is None:
                continue
            if k in first:
                out[r.get("cell")] = first[k]
            else:
                first[k] = r.get("cell")
    return out


def annotate(rows: list[dict]) -> list[dict]:
    """New row dicts with ``same_as`` (:func:`mark_identical`, "" for none) and ``val_chosen``
    (:func:`choose_on_validation`: True for the chosen D-CAT run, False for the others, None for
    rows that are no unshifted D-CAT run)."""
    same = mark_identical(rows)
    chosen = {id(r) for r in choose_on_validation(rows).values()}
    out = []
    for r in rows:
        r2 = dict(r)
        r2["same_as"] = same.get(r.get("cell"), "")
        dcat = r.get("role") == "transfer" and r.get("method") == "dcat" and not is_shifted(r)
        r2["val_chosen"] = (id(r) in chosen) if dcat else None
        out.append(r2)
    return out
