"""Seeded generators of hostile (and some harmless) inputs for the fuzz suite (tests/test_fuzz.py).

A case is identified by ``(kind, seed)``: :func:`make_case` picks the kind's mutator ``seed % len``
(so the first seeds of a kind cover every mutator once) and a ``numpy`` generator seeded with
``(kind, seed)`` draws its parameters. A mutator is a pure function ``(rng) -> Mutation``: what to do
(``apply``, a function of the target path and deterministic given the rng draws), which file it
damages (named in the error message the harness expects) and what must happen:

- ``"error"``: the input breaks the contract (schemas/raw-layout.md, shard.md, experiment.md):
  every command must fail, cleanly, naming the input;
- ``"success"``: a harmless variation (CRLF, whitespace, extra keys): every command must succeed
  with valid output;
- ``"either"``: a clean error or a clean success with valid (finite, in-spec) output.

Kinds and their targets: ``meta`` / ``imu_csv`` / ``labels`` damage one recording folder (its
meta.json, IMU CSV, labels.csv); ``shard`` damages one ``*.h5`` of a shards directory (or the
directory); ``spec`` rewrites the text of an experiment SPEC.toml (given the valid spec's dict).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from fuzzgen_core import Case, Mutation, _pick, _Rng, rng_for
from fuzzgen_data import (shard_attrs, shard_datasets, shard_file, shard_valid, spec_bad_value, spec_structure,
                          spec_text, spec_valid)
from fuzzgen_csv import (imu_bytes, imu_header, imu_nonfinite, imu_rows, imu_time, imu_valid, labels_bytes,
                         labels_fields, labels_times, labels_valid)
from fuzzgen_meta import (folder_name, meta_bad_rate, meta_bytes, meta_deep, meta_huge_number, meta_missing_key,
                          meta_nonfinite, meta_streams, meta_strings, meta_valid, meta_wrong_type)

KINDS = ("meta", "imu_csv", "labels", "shard", "spec")
__all__ = ["KINDS", "GENERATORS", "Case", "Mutation", "make_case", "spec_text"]


def make_case(kind: str, seed: int) -> Case:
    gens = GENERATORS[kind]
    pos = seed % len(gens)
    gen = gens[pos]
    # a mutator listed c times (to draw it more often): its k-th place takes every c-th variant
    k, c = gens[:pos].count(gen), gens.count(gen)
    rng = _Rng(rng_for(kind, seed), (seed // len(gens)) * c + k)
    return Case(kind, seed, gen(rng))


# ==================================================================================== the hostile cases of
# tests/hostile_raw_cases.py, hostile_shard_cases.py, hostile_spec_cases.py (fixed inputs, same oracle)
def _known_raw(prefix: str):
    def gen(rng) -> Mutation:
        try:
            import hostile_raw_cases as H
        except ImportError:  # pragma: no cover - the module is another suite's
            return meta_valid(rng)
        cases = [c for c in H.CASES if c.name.startswith(prefix)]
        c = _pick(rng, cases)
        m = Mutation(f"known={c.name}", lambda rec: None, "success" if c.expect == "ok" else "error",
                     extra={"base": "imu_rec"})

        def apply(rec: Path) -> None:
            m.file = Path(c.mutate(rec) or "").name
        m.apply = apply
        return m
    gen.__name__ = f"known_{prefix.rstrip('-')}"
    return gen


def shard_known(rng) -> Mutation:
    import hostile_shard_cases as H

    name = _pick(rng, sorted(H.CASES))
    return Mutation(f"shard_known={name}", H.CASES[name][0], "error", "")


def spec_known(rng) -> Mutation:
    import hostile_spec_cases as H

    cases = [(n, t, "success") for n, t in H.GOOD_SPECS] + [(n, t, "error") for n, t, _ in H.HOSTILE_SPECS]
    name, text, expect = _pick(rng, cases)

    def apply(p: Path) -> None:
        data = json.loads(p.with_suffix(".json").read_text())["data"]
        out = H.spec_text(text, data)
        p.write_bytes(out if isinstance(out, bytes) else out.encode("utf-8"))
    return Mutation(f"spec_known={name}", apply, expect, "spec.toml")


GENERATORS: dict[str, list[Callable[[_Rng], Mutation]]] = {
    "meta": [meta_valid, meta_nonfinite, meta_huge_number, meta_bad_rate, meta_wrong_type, meta_missing_key,
             meta_deep, meta_strings, meta_bytes, meta_streams, _known_raw("meta-"), folder_name],
    "imu_csv": [imu_valid, imu_nonfinite, imu_time, imu_header, imu_rows, imu_bytes, imu_nonfinite, imu_time,
                _known_raw("imu-")],
    "labels": [labels_valid, labels_fields, labels_times, labels_bytes, _known_raw("labels-")],
    "shard": [shard_valid, shard_attrs, shard_datasets, shard_file, shard_known, shard_datasets, shard_attrs,
              shard_known],
    "spec": [spec_valid, spec_bad_value, spec_structure, spec_bad_value, spec_known, spec_bad_value],
}
