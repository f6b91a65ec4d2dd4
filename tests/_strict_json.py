"""Strict JSON reading for tests: NaN / Infinity (which Python's json writes and reads by default)
are refused, as a strict parser (JavaScript's JSON.parse, jq, serde) would refuse them."""

from __future__ import annotations

import json
from pathlib import Path


def strict_loads(text: str):
    def bad(c):
        raise ValueError(f"non-strict JSON constant {c}")

    return json.loads(text, parse_constant=bad)


def check_tree(root: Path) -> int:
    """Parse every ``*.json`` (whole) and ``*.jsonl`` (line by line) under ``root`` strictly;
    returns how many files were read (AssertionError naming the file on the first bad one)."""
    n = 0
    for p in sorted(Path(root).rglob("*.json*")):
        if p.suffix not in (".json", ".jsonl") or p.name.startswith("."):
            continue
        text = p.read_text()
        try:
            if p.suffix == ".jsonl":
                for line in text.splitlines():
                    if line.strip():
                        strict_loads(line)
            else:
                strict_loads(text)
        except ValueError as e:
            raise AssertionError(f"{p}: not strict JSON: {e}") from None
        n += 1
    return n
