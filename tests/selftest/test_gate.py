"""The CI gate as another repository uses it: one install, one command, the exit code is the verdict.

Builds the wheel, installs it into a fresh virtual environment together with a throw-away "other
repo" (written below) holding a correct and a broken implementation, and runs the README's gate
command there. Slow (a venv with torch), so everything shares one environment per session.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "selftest", "fixtures")
# a user's repository may have packages named like this repository's folders; the wheel installs only
# ``tpconform``, so neither their folder nor their site-packages may shadow the suite
USERS_OWN_PACKAGES = ("strategies", "impls", "conformance")
# What the README's "Use it as a CI gate" runs, restricted to world sizes 1-3 to stay fast here, and
# with a generous hang timeout: a busy CI machine must not turn a slow example into a failure.
SLOW_OK = "--tp-timeout=120"
GATE = ["check", "--world-sizes=1-3", SLOW_OK, "--junitxml=report.xml"]  # the broken adapter's gate

LAYERS = '''
"""theirpkg.layers: tensor-parallel linear layers (even shards only)."""
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def all_reduce(x, group):
    x = x.contiguous().clone()
    dist.all_reduce(x, group=group)
    return x


def gather_last(x, group):
    parts = [torch.empty_like(x.contiguous()) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, x.contiguous(), group=group)
    return torch.cat(parts, dim=-1)


def my_slice(x, group):
    n = x.shape[-1] // dist.get_world_size(group)
    return x.narrow(-1, dist.get_rank(group) * n, n).contiguous()


def identity(x, group):
    return x.view_as(x)


class Comm(torch.autograd.Function):
    """``forward_op`` forward, ``backward_op`` backward."""

    @staticmethod
    def forward(ctx, x, group, forward_op, backward_op):
        ctx.group, ctx.backward_op = group, backward_op
        return forward_op(x, group)

    @staticmethod
    def backward(ctx, grad):
        return ctx.backward_op(grad, ctx.group), None, None, None


def my_block(size, group):
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    if size % world:
        raise ValueError(f"{size} features do not split evenly over {world} ranks")
    n = size // world
    return slice(rank * n, (rank + 1) * n)


class ColumnLinear(nn.Module):
    def __init__(self, weight, bias, gather_output, group):
        super().__init__()
        rows = my_block(weight.shape[0], group)
        self.group, self.gather_output = group, gather_output
        self.weight = nn.Parameter(weight[rows].clone())
        self.bias = None if bias is None else nn.Parameter(bias[rows].clone())

    def forward(self, x):
        y = F.linear(Comm.apply(x, self.group, identity, all_reduce), self.weight, self.bias)
        return Comm.apply(y, self.group, gather_last, my_slice) if self.gather_output else y


class RowLinear(nn.Module):
    def __init__(self, weight, bias, input_is_parallel, group, bias_before_reduce=False):
        super().__init__()
        cols = my_block(weight.shape[1], group)
        self.group, self.input_is_parallel = group, input_is_parallel
        self.bias_before_reduce = bias_before_reduce
        self.weight = nn.Parameter(weight[:, cols].clone())
        self.bias = None if bias is None else nn.Parameter(bias.clone())

    def forward(self, x):
        if not self.input_is_parallel:
            x = Comm.apply(x, self.group, my_slice, gather_last)
        if self.bias_before_reduce:  # the bug: every rank adds the bias, so the sum has it world_size times
            return Comm.apply(F.linear(x, self.weight, self.bias), self.group, all_reduce, identity)
        y = Comm.apply(F.linear(x, self.weight), self.group, all_reduce, identity)
        return y if self.bias is None else y + self.bias
'''

ADAPTER = '''
"""The tpconform adapter: the whole protocol (README, "Write an adapter")."""
from tpconform.impls.protocol import Capabilities, TensorParallelImpl

from theirpkg.layers import ColumnLinear, RowLinear


class Adapter(TensorParallelImpl):
    name = "theirpkg"
    version = "1.2.3"
    capabilities = Capabilities(uneven_shards=False, dtypes=("float64", "float32"))

    def column(self, weight, bias, *, gather_output, group):
        return ColumnLinear(weight, bias, gather_output, group)

    def row(self, weight, bias, *, input_is_parallel, group):
        return RowLinear(weight, bias, input_is_parallel, group)


class BrokenAdapter(Adapter):
    def row(self, weight, bias, *, input_is_parallel, group):
        return RowLinear(weight, bias, input_is_parallel, group, bias_before_reduce=True)
'''

UNRELATED_TEST = '''
import sys


def test_the_installed_plugin_stays_out_of_the_way():
    from hypothesis import settings

    assert "tpconform.transport.harness" not in sys.modules  # no process groups
    assert "torch" not in sys.modules  # not even a torch import
    from hypothesis._settings import is_in_ci

    # no global Hypothesis profile change (Hypothesis itself picks its "ci" profile on CI machines)
    assert settings._current_profile == ("ci" if is_in_ci() else "default")
'''

KNOWN_FAILURES = '''
[[deviation]]
id = "bias-added-per-rank"
impl = "theirpkg.tp:BrokenAdapter"
property = "output_matches_the_dense_layer"
when = {{ kind = "{kind}", bias = true, world_size = ">1" }}
reason = "accepted: our row layer adds the bias on every rank (tracked in theirpkg#12)"
'''


def test_the_wheel_finds_every_package():
    """The packages are found (setup.py), never listed in pyproject.toml: every folder with an ``__init__.py``
    under the four folders of ``tpconform`` is one, a new family folder (or its ``bugs/``) included, and
    nothing outside ``tpconform`` is installed."""
    import runpy

    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        config = tomllib.load(f)["tool"]["setuptools"]
    assert "packages" not in config, "pyproject.toml lists packages: setup.py finds them (a list there wins and goes stale)"
    packages = runpy.run_path(os.path.join(ROOT, "setup.py"), run_name="tpconform_setup")["packages"]()
    folders = {name: os.path.join(ROOT, top) for name, top in config["package-dir"].items()}
    found = {".".join(p for p in (name, os.path.relpath(d, top).replace(os.sep, ".")) if p != ".")
             for name, top in folders.items()
             for d, _, files in os.walk(top) if "__init__.py" in files and "__pycache__" not in d}
    assert found - set(packages) == set(), "setup.py misses these packages"
    assert {p.split(".")[0] for p in packages} == {"tpconform"}, "one import package: nothing else in site-packages"
    assert {f"tpconform.families.{name}" for name in os.listdir(os.path.join(ROOT, "conformance", "families"))
            if os.path.isfile(os.path.join(ROOT, "conformance", "families", name, "family.py"))} <= set(packages)


def _copy_source(dest: str) -> None:
    """This checkout's working tree (tracked and new files), without build and cache debris."""
    junk = shutil.ignore_patterns(".git", ".venv", ".tox", ".hypothesis", ".benchmarks", "__pycache__", "build",
                                  "dist", "*.egg-info", "results", ".pytest_cache", ".ruff_cache", ".mypy_cache")
    shutil.copytree(ROOT, dest, ignore=junk)


def _write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(textwrap.dedent(text).lstrip())


def _pip(*args: str, python: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-compile", *args],
                   check=True, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def other_repo(tmp_path_factory):
    """A fresh venv holding the tpconform wheel and the other repo's package; returns (repo, bin)."""
    base = tmp_path_factory.mktemp("gate")
    src, dist_dir, venv, repo = (str(base / n) for n in ("src", "dist", "venv", "other-repo"))
    _copy_source(src)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", dist_dir,
                    src], check=True, capture_output=True, text=True, timeout=300)
    (wheel,) = os.listdir(dist_dir)
    _write(os.path.join(repo, "pyproject.toml"), """
        [project]
        name = "theirpkg"
        version = "1.2.3"
        [tool.setuptools]
        packages = ["theirpkg", "strategies", "impls", "conformance"]
    """)
    for own in USERS_OWN_PACKAGES:  # named like the repository's folders: in their folder and their site-packages
        _write(os.path.join(repo, own, "__init__.py"), f'"""{own}: a package of the other repo."""\nX = 1\n')
    shutil.copy(os.path.join(FIXTURES, "simple_module_good.py"), os.path.join(repo, "my_layer.py"))
    shutil.copy(os.path.join(FIXTURES, "simple_module_good.py"), repo)  # what the buggy file imports
    shutil.copy(os.path.join(FIXTURES, "simple_module_bias_every_rank.py"), os.path.join(repo, "my_buggy_layer.py"))
    _write(os.path.join(repo, "theirpkg", "__init__.py"), "")
    _write(os.path.join(repo, "theirpkg", "layers.py"), LAYERS)
    _write(os.path.join(repo, "theirpkg", "tp.py"), ADAPTER)
    _write(os.path.join(repo, "tests", "test_unrelated.py"), UNRELATED_TEST)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=120)
    python = os.path.join(venv, "bin", "python")
    _pip("torch==2.13.0", os.path.join(dist_dir, wheel), repo, python=python)
    return repo, os.path.join(venv, "bin")


def run_in(repo_and_bin, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    repo, bindir = repo_and_bin
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    return subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True, timeout=timeout)


def junit(repo: str) -> ET.Element:
    root = ET.parse(os.path.join(repo, "report.xml")).getroot()
    return root if root.tag == "testsuite" else root.find("testsuite")


def assert_a_green_default_run(r: subprocess.CompletedProcess, name: str) -> str:
    """A complete default run (run with ``-rs``) is green: exit 0, something passed, nothing failed, and
    every skip says why (pytest's own skip summary); returns its summary line."""
    summary = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    assert r.returncode == 0, f"{name}: {summary}\n{r.stdout[-6000:]}\n{r.stderr[-2000:]}"
    assert " passed" in summary and "failed" not in summary and "error" not in summary, summary
    skipped = re.search(r"(\d+) skipped", summary)
    if skipped:
        assert sum(int(n) for n in re.findall(r"^SKIPPED \[(\d+)\]", r.stdout, flags=re.M)) == int(skipped.group(1))
    reasons = re.findall(r"^SKIPPED \[\d+\] [^:]+:\d+: ?(.*)$", r.stdout, flags=re.M)
    assert all(len(reason.strip()) > 10 for reason in reasons), reasons
    return summary


def test_a_conforming_impl_passes_the_gate_with_a_junit_report(other_repo):
    """The gate as another repo's CI runs it: the README's adapter, from the wheel, the complete default run
    (world sizes 1-8, every dtype: nothing else is set but the report), a junit report."""
    r = run_in(other_repo, "tpconform", "check", "--junitxml=report.xml", "-rs", "--impl=theirpkg.tp:Adapter")
    assert_a_green_default_run(r, "the README's adapter")
    assert "tpconform: impl=theirpkg.tp:Adapter (theirpkg 1.2.3)" in r.stdout
    suite = junit(other_repo[0])
    assert int(suite.get("tests")) >= 8 and suite.get("failures") == "0" and suite.get("errors") == "0"


def test_a_broken_impl_fails_the_gate_naming_the_property(other_repo):
    # -x: CI time; "not mlp and not case_class": the MLP and the covering cases (collected first) catch it too
    r = run_in(other_repo, "tpconform", *GATE, "--impl=theirpkg.tp:BrokenAdapter", "-x", "-k",
               "not mlp and not case_class")
    assert r.returncode == 1, r.stdout[-4000:] + r.stderr[-2000:]
    assert "property violated: output matches the dense layer" in r.stdout, r.stdout[-6000:]
    failed = [c.get("name") for c in junit(other_repo[0]).iter("testcase") if c.find("failure") is not None]
    assert len(failed) == 1 and failed[0].startswith("test_output_matches_the_dense_layer[row-"), failed


def test_a_students_file_checked_from_their_own_folder(other_repo):
    """The README's headline command, run where the user is: their folder, beside their own packages
    named ``strategies``/``impls``/``conformance``, the suite installed from the wheel. It runs the whole
    suite at the defaults (not "no tests ran"; world sizes 1-8, every dtype), and the exit code is the verdict."""
    r = run_in(other_repo, "pytest", "--impl=my_layer.py", "-rs")  # the complete default run, nothing else set
    assert_a_green_default_run(r, "a student's file")
    passed = int(re.search(r"(\d+) passed", r.stdout).group(1))
    assert passed >= 20 and "tpconform: impl=my_layer.py" in r.stdout, r.stdout[-3000:]
    ids = [line for line in r.stdout.splitlines() if not line.startswith("SKIPPED [")]  # -rs names the files
    assert not any("site-packages" in line for line in ids), "test ids name the installed suite, not the grader's paths"


@pytest.mark.parametrize("command", [("pytest",), ("tpconform", "check")], ids=["pytest", "tpconform-check"])
def test_a_buggy_students_file_fails_from_their_own_folder(other_repo, command):
    r = run_in(other_repo, *command, "--impl=my_buggy_layer.py", "--world-sizes=2", SLOW_OK, "-x",
               "-k", "output_matches and row-")
    assert r.returncode == 1 and "property violated: output matches the dense layer" in r.stdout, \
        r.stdout[-4000:] + r.stderr[-2000:]
    assert "PytestAssertRewriteWarning" not in r.stdout + r.stderr


@pytest.mark.parametrize("command", [("pytest",), ("tpconform", "check")], ids=["pytest", "tpconform-check"])
def test_a_missing_file_is_one_line_and_exit_4(other_repo, command):
    r = run_in(other_repo, *command, "--impl=no_such_layer.py")
    assert r.returncode == 4, r.stdout[-2000:] + r.stderr[-2000:]
    assert "no_such_layer.py" in r.stderr and "Traceback" not in r.stdout + r.stderr, r.stderr


def test_the_plugin_is_inert_in_the_other_repos_own_test_runs(other_repo):
    r = run_in(other_repo, "pytest", "tests")
    assert r.returncode == 0, r.stdout[-3000:]
    assert "tpconform:" not in r.stdout  # no report header


def test_the_gate_without_an_impl_gets_one_clear_line(other_repo):
    r = run_in(other_repo, "tpconform", "check")
    assert r.returncode not in (0, 1) and r.stderr.count("\n") == 1 and "--impl=SPEC" in r.stderr, r.stderr


PYTEST_FORM = ("pytest", "--pyargs", "tpconform.properties")  # the same gate, as a plain pytest run


@pytest.mark.parametrize("command, kind, exit_code, says", [
    (PYTEST_FORM, "row", 0, r"XFAIL .*row-.*bias-added-per-rank"),  # the accepted deviation
    (("tpconform", "check"), "column", 1, r"STALE known failure bias-added-per-rank"),  # matches nothing
], ids=["accepted-deviation-xfails", "stale-entry-fails"])
def test_a_users_known_failures_file(other_repo, command, kind, exit_code, says):
    _write(os.path.join(other_repo[0], "known.toml"), KNOWN_FAILURES.format(kind=kind))
    # xdist for the stale entry: workers have their own ports and counts; the controller must add them up
    xdist = ("-n", "2") if exit_code else ()
    r = run_in(other_repo, *command, *xdist, "--impl=theirpkg.tp:BrokenAdapter", "--world-sizes=2", SLOW_OK,
               "--known-failures=known.toml", "-k", f"output_matches and {kind}-", "-rxs")
    assert r.returncode == exit_code and re.search(says, r.stdout), r.stdout[-4000:]
