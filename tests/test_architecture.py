"""The house rules of docs/architecture.md, checked: floors point down only, the
method packages stay independent, no import circle, no oversized module."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "src" / "napari_wsseg"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(src: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )


def test_import_contracts_are_kept():
    """`lint-imports` (the contracts in pyproject.toml) passes on the package."""
    run = _lint_imports(ROOT / "src")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "broken" in run.stdout and " 0 broken" in run.stdout


def test_a_broken_contract_fails(tmp_path):
    """The contracts bite: an up-pointing import (io -> training) and an import
    between two method packages are both reported."""
    copy = tmp_path / "napari_wsseg"
    shutil.copytree(PKG, copy, ignore=shutil.ignore_patterns("__pycache__", "default_models"))
    with open(copy / "io" / "base.py", "a") as f:
        f.write("\nfrom napari_wsseg.training import registry  # noqa\n")
    with open(copy / "methods" / "glam" / "nets.py", "a") as f:
        f.write("\nfrom napari_wsseg.methods.manifold import nets as _other  # noqa\n")
    run = _lint_imports(tmp_path)
    assert run.returncode != 0
    assert "Floors point down only" in run.stdout and "BROKEN" in run.stdout
    assert "napari_wsseg.io.base -> napari_wsseg.training.registry" in run.stdout
    assert "napari_wsseg.methods.glam.nets -> napari_wsseg.methods.manifold.nets" in run.stdout


def _cycle(graph: grimp.ImportGraph) -> list[str] | None:
    """One import circle among the package's modules, or None (iterative DFS)."""
    edges = {
        m: sorted(i for i in graph.find_modules_directly_imported_by(m) if i in graph.modules)
        for m in graph.modules
    }
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    for start in sorted(edges):
        if state.get(start):
            continue
        stack = [(start, iter(edges[start]))]
        path = [start]
        state[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                state[node] = 2
            elif state.get(child) == 1:
                return path[path.index(child) :] + [child]
            elif not state.get(child):
                state[child] = 1
                stack.append((child, iter(edges[child])))
                path.append(child)
    return None


def test_no_import_circle():
    """No module of the package reaches itself through imports (function-local and
    TYPE_CHECKING imports count: grimp sees them all)."""
    graph = grimp.build_graph("napari_wsseg")
    assert len(graph.modules) > 90
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_cycle_finder_finds_a_circle():
    graph = grimp.ImportGraph()
    for m in ("a", "a.x", "a.y", "a.z"):
        graph.add_module(m)
    graph.add_import(importer="a.x", imported="a.y")
    graph.add_import(importer="a.y", imported="a.z")
    assert _cycle(graph) is None
    graph.add_import(importer="a.z", imported="a.x")
    assert _cycle(graph) == ["a.x", "a.y", "a.z", "a.x"]


def test_each_method_is_a_package_exposing_method():
    """methods/<name>/ packages, each with METHOD, found by the one registry."""
    from napari_wsseg.methods import METHODS, get_method
    from napari_wsseg.methods.base import Method

    for name, module in METHODS.items():
        assert module == f"napari_wsseg.methods.{name}"
        assert (PKG / "methods" / name / "__init__.py").is_file()
        assert issubclass(get_method(name), Method)
    flat = sorted(p.name for p in (PKG / "methods").glob("*.py"))
    shared = ["mask_loss.py", "progress.py", "saliency.py", "streaming.py", "tiling.py"]
    assert flat == ["__init__.py", "base.py", *shared]


def test_modules_stay_small():
    """Every module under ~400 lines (the house style; napari's 90th percentile)."""
    big = {
        str(p.relative_to(PKG)): n
        for p in PKG.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 450
    }
    assert not big, big


def test_every_internal_import_resolves():
    """Each ``napari_wsseg.*`` import in the package names a module or a name that
    exists (grimp silently drops imports of modules that are gone, so a moved module
    would slip past the contracts)."""
    import ast
    import importlib
    import importlib.util

    missing = []
    for path in sorted(PKG.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mod, names = node.module, [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                mod, names = None, [a.name for a in node.names]
            else:
                continue
            targets = [mod] if mod else names
            for target in targets:
                if target.startswith("napari_wsseg") and importlib.util.find_spec(target) is None:
                    missing.append(f"{path.relative_to(PKG)}: {target}")
            if mod and mod.startswith("napari_wsseg") and importlib.util.find_spec(mod):
                spec = importlib.util.find_spec(mod)
                if spec.submodule_search_locations is None:
                    continue  # a module: its names are checked by importing it elsewhere
                for name in names:
                    if importlib.util.find_spec(f"{mod}.{name}") is None:
                        init = Path(spec.origin).read_text()
                        if name not in init:
                            missing.append(f"{path.relative_to(PKG)}: {mod}.{name}")
    assert not missing, missing
