"""The architecture held by a test: every import in ``conformance/`` points down the layers of
docs/ARCHITECTURE.md, and no front-end is imported below it.

Layers, top to bottom: the front-ends (``pytest_plugin/``, ``cli/``, ``grading/``, ``__main__.py``) >
``engine/`` > ``families/`` > ``transport/`` > ``spec/``. A module may import its own layer or one below;
the front-ends are peers that do not import one another (``__main__.py``, the command dispatcher, may
import them all). The two places a lower layer needs a higher one go by name, not by import: the
transport's worker loop finds a family's ``worker.py``, the registry a family's ``family.py``.

Every import is read (ast), function-local and ``TYPE_CHECKING`` ones included: a lazy import is still
an arrow. ``tpconform.impls``, ``tpconform.strategies`` and ``tpconform.properties`` are outside these
layers (they are the impl protocol, the public strategies and the property tests) and are not checked here.
"""

from __future__ import annotations

import ast
import pathlib
from typing import Optional

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2] / "conformance"
PACKAGE = "tpconform"  # conformance/ as installed

# (layer, rank): a higher rank is a higher layer; every front-end has the top rank
LAYERS = {"pytest_plugin": 4, "cli": 4, "grading": 4, "__main__": 4,
          "engine": 3, "families": 2, "transport": 1, "spec": 0}
FRONT_ENDS = {name for name, rank in LAYERS.items() if rank == max(LAYERS.values())}
DISPATCHER = "__main__"  # may import every front-end: it is the command line's switchboard
FRONT_END_LIBRARIES = {"pytest": "pytest_plugin", "_pytest": "pytest_plugin"}  # pytest is the plugin's alone

# Today's upward imports. The test fails on one not listed here and on a listed one that no longer is
# one: this set can only shrink.
KNOWN_UPWARD = {
    ("engine/suite.py", "pytest"),  # pytest.skip for a family the impl does not offer (s9-linear's file)
}


def _module_name(path: pathlib.Path, root: pathlib.Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([PACKAGE, *parts])


def _imported(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """The modules an import statement names (``from a import b``: ``a``, whose layer is ``b``'s)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    assert isinstance(node, ast.ImportFrom)
    base = node.module or ""
    if node.level:  # relative: resolve against this module's package
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[:len(package) - (node.level - 1)]
        base = ".".join([*package, *([base] if base else [])])
    return [base] if base else [alias.name for alias in node.names]


def module_map(root: pathlib.Path = ROOT) -> dict[str, list[tuple[int, str]]]:
    """For each ``.py`` file under ``root`` (by its path relative to ``root``), the ``tpconform``
    modules it imports, with their line numbers."""
    out: dict[str, list[tuple[int, str]]] = {}
    for path in sorted(root.rglob("*.py")):
        module = _module_name(path, root)
        tree = ast.parse(path.read_text(), filename=str(path))
        found = []
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found += [(node.lineno, name) for name in _imported(node, module, path.name == "__init__.py")
                          if name.split(".")[0] in (PACKAGE, *FRONT_END_LIBRARIES)]
        out[path.relative_to(root).as_posix()] = found
    return out


def layer_of_file(rel: str) -> Optional[str]:
    """The layer of a file under conformance/ (``None``: the package's own ``__init__.py``)."""
    top = rel.split("/")[0].removesuffix(".py")
    if top == "__init__":
        return None
    if top not in LAYERS:
        raise AssertionError(f"conformance/{rel}: in no layer of {sorted(LAYERS)}; add it to LAYERS "
                             "(and to docs/ARCHITECTURE.md)")
    return top


def layer_of_module(name: str) -> Optional[str]:
    """The layer of an imported ``tpconform.X...`` module (``pytest``: the plugin's); ``None`` when outside
    the layers (the package itself, ``tpconform.impls``, ``tpconform.strategies``, ``tpconform.properties``)."""
    parts = name.split(".")
    if parts[0] in FRONT_END_LIBRARIES:
        return FRONT_END_LIBRARIES[parts[0]]
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def upward(modules: dict[str, list[tuple[int, str]]]) -> dict[tuple[str, str], str]:
    """Every import that points up or sideways into another front-end: ``(file, module)`` -> one line."""
    found = {}
    for rel, imports in modules.items():
        here = layer_of_file(rel)
        if here is None:
            continue
        for line, name in imports:
            there = layer_of_module(name)
            if there is None or there == here:
                continue
            if LAYERS[there] > LAYERS[here]:
                why = f"points up ({here} imports {there})"
            elif there in FRONT_ENDS and here != DISPATCHER:
                why = f"imports another front-end ({here} imports {there})"
            else:
                continue
            found.setdefault((rel, name), f"conformance/{rel}:{line}: import of {name} {why}")
    return found


def problems(modules: dict[str, list[tuple[int, str]]], known: set = KNOWN_UPWARD) -> list[str]:
    """What the test fails on: an upward import not in ``known``, and an entry of ``known`` that is
    no longer an upward import (remove it from KNOWN_UPWARD)."""
    found = upward(modules)
    new = [line for key, line in sorted(found.items()) if key not in known]
    gone = [f"KNOWN_UPWARD lists conformance/{rel} importing {name}, which it no longer does upward: "
            "remove the entry" for rel, name in sorted(known) if (rel, name) not in found]
    return new + gone


def test_every_import_points_down_the_layers():
    bad = problems(module_map())
    assert not bad, "\n".join(bad)


def test_every_file_is_in_a_layer():
    for rel in module_map():
        layer_of_file(rel)  # raises, naming the file, for a folder in no layer


def test_the_layers_are_the_drawings():
    """docs/ARCHITECTURE.md's picture names the same layers, top to bottom, as LAYERS."""
    doc = (ROOT.parent / "docs" / "ARCHITECTURE.md").read_text()
    drawn = [line.split()[0] for line in doc.split("```")[1].splitlines()
             if line[:1] == " " and line[1:2] != " " and line.split()[0] in ("front-ends", *LAYERS)]
    assert drawn == ["front-ends", "engine", "families", "transport", "spec"], drawn
    by_rank = sorted((n for n in LAYERS if n not in FRONT_ENDS), key=LAYERS.__getitem__, reverse=True)
    assert by_rank == drawn[1:]
    assert all(f"{name}/" in doc or f"{name}.py" in doc for name in FRONT_ENDS)


def test_the_worker_loop_finds_families_by_name_only():
    """transport/worker.py imports no family: it finds ``families/<name>/worker.py`` from the message."""
    imports = module_map()["transport/worker.py"]
    assert not [name for _, name in imports if layer_of_module(name) == "families"]
    assert "tpconform.families" in (ROOT / "transport" / "worker.py").read_text()  # the name it imports by


# -- the checker, shown to fail --------------------------------------------------------------------
def _plant(tmp_path: pathlib.Path, files: dict[str, str]) -> pathlib.Path:
    root = tmp_path / "conformance"
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.parametrize("rel, text, says", [
    ("spec/cases.py", "from tpconform.transport import wire\n", "spec/cases.py:1: import of tpconform.transport"
                                                                  " points up (spec imports transport)"),
    ("transport/worker.py", "def f():\n    from tpconform.families.linear import worker\n",
     "transport/worker.py:2: import of tpconform.families.linear points up"),
    ("families/mlp/verdict.py", "import tpconform.engine.suite\n", "points up (families imports engine)"),
    ("engine/suite.py", "from ..pytest_plugin.plugin import state\n",
     "import of tpconform.pytest_plugin.plugin points up (engine imports pytest_plugin)"),
    ("grading/cli.py", "from tpconform.pytest_plugin.plugin import parse_world_sizes\n",
     "imports another front-end (grading imports pytest_plugin)"),
    ("transport/harness.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                             "    from tpconform.spec import cases\n    from tpconform.grading import records\n",
     "transport/harness.py:4: import of tpconform.grading points up"),
    ("engine/known_failures.py", "import operator\nimport pytest\n",
     "engine/known_failures.py:2: import of pytest points up (engine imports pytest_plugin)"),
    ("transport/torchrun_mode.py", "def f():\n    from _pytest.outcomes import fail\n", "import of _pytest.outcomes"),
])
def test_an_upward_import_fails_naming_file_and_import(tmp_path, rel, text, says):
    root = _plant(tmp_path, {rel: text, "spec/__init__.py": ""})
    bad = problems(module_map(root), known=set())
    assert len(bad) == 1 and says in bad[0], bad


@pytest.mark.parametrize("rel, text", [
    ("engine/suite.py", "from tpconform.families.registry import families\nfrom tpconform.spec import cases\n"),
    ("__main__.py", "from tpconform.grading import cli\nfrom tpconform.cli import replay\n"),
    ("grading/one.py", "from tpconform.grading.records import x\nfrom tpconform.impls import registry\n"
                       "from tpconform.strategies import layers\n"),
    ("transport/worker.py", "import importlib\nimportlib.import_module('tpconform.families.x.worker')\n"),
])
def test_a_downward_import_passes(tmp_path, rel, text):
    assert problems(module_map(_plant(tmp_path, {rel: text})), known=set()) == []


def test_known_upward_can_only_shrink(tmp_path):
    planted = {"families/linear/properties.py": "from tpconform.engine.runner import Outcome\n"}
    known = {("families/linear/properties.py", "tpconform.engine.runner")}
    assert problems(module_map(_plant(tmp_path, planted)), known) == []
    fixed = {"families/linear/properties.py": "from tpconform.spec.results import Outcome\n"}
    bad = problems(module_map(_plant(tmp_path / "fixed", fixed)), known)
    assert len(bad) == 1 and "no longer does upward: remove the entry" in bad[0], bad


def test_a_folder_in_no_layer_is_named(tmp_path):
    root = _plant(tmp_path, {"helpers/x.py": "import os\n"})
    with pytest.raises(AssertionError, match=r"conformance/helpers/x.py: in no layer"):
        for rel in module_map(root):
            layer_of_file(rel)
