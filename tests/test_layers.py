"""The import rules of ARCHITECTURE.md: pipelines/ in layers, no cycles.

Every import of every module under ``pipelines/`` is read with ``ast`` (function-level imports
included), resolved to the module it names, and checked:

- a module imports only its own subpackage or a lower layer (``LAYERS``); ``ingest`` and ``synth``
  share a layer and do not import each other; nothing in ``pipelines`` imports ``dcat_cli``;
- the module graph has no cycle.

The checker runs first on a small tree made in the test with a known upward import and a known
cycle, so a checker that finds nothing cannot pass.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: layer of each subpackage of pipelines (ARCHITECTURE.md); a module may import its own subpackage
#: and lower layers only. ``pipelines`` itself (the version) is importable from anywhere.
LAYERS = {"core": 0, "shards": 1, "ingest": 2, "synth": 2, "learn": 3, "study": 4, "deploy": 4}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def read_imports(root: Path, package: str = "pipelines") -> dict[str, set[str]]:
    """``{module: {imported module, ...}}`` for every module under ``root/package`` (absolute and
    relative imports, at any depth of the file), restricted to names inside ``package`` and
    ``dcat_cli``; ``from a.b import c`` counts as importing ``a.b.c`` when that is a module."""
    files = sorted((root / package).rglob("*.py"))
    modules = {module_name(p, root): p for p in files}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_pkg = path.name == "__init__.py"
        here = name if is_pkg else name.rsplit(".", 1)[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.split(".")[: len(here.split(".")) - node.level + 1]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in modules else mod for a in node.names]
            else:
                continue
            for t in targets:
                if t.split(".")[0] in (package, "dcat_cli") and t != name:
                    deps.add(t)
        graph[name] = deps
    return graph


def layer_problems(graph: dict[str, set[str]], layers: dict[str, int], package: str = "pipelines") -> list[str]:
    """Imports that go up a layer, sideways between two packages of one layer, or out to dcat_cli."""
    out = []
    for mod, deps in sorted(graph.items()):
        parts = mod.split(".")
        if len(parts) < 2:
            continue
        me = parts[1]
        for d in sorted(deps):
            dp = d.split(".")
            if dp[0] == "dcat_cli":
                out.append(f"{mod} imports {d}: the library never imports the command line")
                continue
            if len(dp) < 2 or dp[1] == me:
                continue
            if dp[1] not in layers or me not in layers:
                out.append(f"{mod} imports {d}: {dp[1] if dp[1] not in layers else me} is in no layer")
            elif layers[dp[1]] >= layers[me]:
                out.append(f"{mod} (layer {layers[me]}, {me}) imports {d} (layer {layers[dp[1]]}, {dp[1]})")
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _write(root: Path, rel: str, text: str = "") -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def test_checker_finds_a_planted_upward_import_and_cycle(tmp_path):
    for pkg in ("core", "learn", "study"):
        _write(tmp_path, f"pkg/{pkg}/__init__.py")
    _write(tmp_path, "pkg/__init__.py")
    _write(tmp_path, "pkg/core/a.py", "def f():\n    from pkg.study import c  # upward, inside a function\n")
    _write(tmp_path, "pkg/learn/b.py", "from pkg.core.a import f\nfrom . import d\n")
    _write(tmp_path, "pkg/learn/d.py", "import pkg.learn.b\n")
    _write(tmp_path, "pkg/study/c.py", "from pkg.learn import b\n")
    g = read_imports(tmp_path, "pkg")
    assert g["pkg.learn.b"] == {"pkg.core.a", "pkg.learn.d"}
    probs = layer_problems(g, {"core": 0, "learn": 1, "study": 2}, "pkg")
    assert probs == ["pkg.core.a (layer 0, core) imports pkg.study.c (layer 2, study)"]
    # a -> c -> b -> a, and b <-> d: one strongly connected component of four modules
    assert cycles(g) == [["pkg.core.a", "pkg.learn.b", "pkg.learn.d", "pkg.study.c"]]


def test_pipelines_imports_go_down_the_layers_only():
    graph = read_imports(ROOT)
    assert len(graph) > 30, "the walk found too few modules"
    assert any(d.startswith("pipelines.learn.") for d in graph["pipelines.study.cells"])  # function-level imports
    packages = {m.split(".")[1] for m in graph if m.count(".") >= 1}
    assert packages == set(LAYERS), f"subpackages without a layer: {packages - set(LAYERS)}"
    assert layer_problems(graph, LAYERS) == []


def test_pipelines_has_no_import_cycle():
    assert cycles(read_imports(ROOT)) == []



def test_architecture_md_names_only_what_exists():
    """Every file ARCHITECTURE.md names exists, every `file: name` it cites is defined there, the
    layer table lists the LAYERS above, and the one-window path names at most 8 files."""
    import re

    text = (ROOT / "ARCHITECTURE.md").read_text()
    paths = set(re.findall(r"`((?:pipelines|dcat_cli|schemas|tests)/[\w./-]+)", text))
    assert len(paths) > 15
    missing = sorted(p for p in paths if not (ROOT / p.rstrip("/")).exists())
    assert missing == [], f"ARCHITECTURE.md names files that do not exist: {missing}"
    cited = re.findall(r"`((?:pipelines|dcat_cli)/[\w/]+\.py)`?: `?(\w+)", text)
    assert len(cited) >= 10
    for path, name in cited:
        src = (ROOT / path).read_text()
        assert re.search(rf"^(class|def) {name}\b|^{name}\b.*=", src, re.M), f"{path} defines no {name}"
    for pkg, layer in LAYERS.items():
        assert f"| {layer} | `pipelines/{pkg}/` |" in text, f"the layer table lacks {pkg} (layer {layer})"
    section = text.split("## One window", 1)[1].split("\n## ", 1)[0]
    steps = re.findall(r"^\d+\. `((?:pipelines|dcat_cli)/[\w/.]+)`", section, re.M)
    assert 4 <= len(steps) == len(set(steps)) <= 8, steps
