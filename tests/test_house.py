"""The house's rules, read from the code's own imports (imports inside functions included):
no module imports a module of a layer above its own, no stage imports another stage or the CLI,
and no import cycle between modules."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "dreamgym_cli"
# lowest first: a module may import its own layer and those below it
LAYERS = [
    ("base", ["errors", "schema", "config", "ui", "artifacts", "__init__"]),
    ("records", ["trajectories", "trajectory_io", "trajectory_formats", "conversations",
                 "canonical_fast"]),
    ("storage, models, processes", ["store", "llm", "scale"]),
    ("experience, environments", ["experience", "envs", "scale.ray_env"]),
    ("learning", ["rl", "curriculum"]),
    ("server", ["serve"]),
    ("stages", ["stages"]),
    ("command line", ["cli"]),
]


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def layer_of(module: str) -> int:
    inner = module.removeprefix("dreamgym_cli").removeprefix(".") or "__init__"
    best = None
    for rank, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if inner == prefix or inner.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (rank, len(prefix))
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best[0]


def imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the package modules it imports (anywhere in the file)."""
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(target + "."):
                    edges[name].add(target)
    return edges


def test_every_module_has_a_layer_and_imports_none_above_it():
    edges = imports(modules())
    upward = [f"{m} ({LAYERS[layer_of(m)][0]}) -> {t} ({LAYERS[layer_of(t)][0]})"
              for m, targets in edges.items() for t in targets if layer_of(t) > layer_of(m)]
    assert upward == []


def test_no_stage_imports_another_stage_or_the_cli():
    edges = imports(modules())
    family = lambda m: m.split(".")[2].split("_")[0] if m.count(".") >= 2 else m  # noqa: E731
    bad = [f"{m} -> {t}" for m, targets in edges.items() if m.startswith("dreamgym_cli.stages.")
           for t in targets
           if t == "dreamgym_cli.cli" or (t.startswith("dreamgym_cli.stages.")
                                           and t != "dreamgym_cli.stages"
                                           and family(t) != family(m))]
    assert bad == []


def test_no_import_cycles():
    edges = imports(modules())
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    assert cycles == []


def test_the_rules_catch_what_they_claim(tmp_path):
    """The checks are not vacuous: the real graph has edges, and an upward edge is seen as one."""
    edges = imports(modules())
    assert sum(len(t) for t in edges.values()) > 100
    assert layer_of("dreamgym_cli.stages.collect") > layer_of("dreamgym_cli.rl.rollout")
    assert layer_of("dreamgym_cli.scale.distributed") < layer_of("dreamgym_cli.scale.ray_env")
    assert "dreamgym_cli.rl.rollout" in edges["dreamgym_cli.stages.rollout"] or \
        any(t.startswith("dreamgym_cli.rl.") for t in edges["dreamgym_cli.stages.rollout"])
