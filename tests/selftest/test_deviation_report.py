"""``python -m tpconform report-deviation``: every known deviation of the peers prints as a complete
bug report whose script runs on its own and shows the deviation; and a primitive that writes into its
input in place is reported as doing so, even when autograd refuses it on the suite's leaf input."""

import ast
import os
import subprocess
import sys

from tpconform.cli import deviation_report
from tpconform.engine.suite import Suite
from tpconform.families.primitives import verdict as primitives
from tpconform.families.primitives.verdict import PrimitiveCase

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cli(*args, timeout=300):
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.run([sys.executable, "-m", "tpconform", "report-deviation", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_every_known_deviation_has_a_standalone_script():
    entries = deviation_report.entries([])
    assert entries
    for entry in entries:
        assert entry.repro, f"{entry.id} names no repro script"
        text = deviation_report.script(entry)
        tree = ast.parse(text)  # a whole, valid Python file
        names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert "check" in names and "if __name__ == \"__main__\":" in text, entry.id
        assert "import tpconform" not in text and "from impls" not in text, f"{entry.id}'s script is not standalone"


def test_list_names_every_deviation():
    r = cli("--list")
    assert r.returncode == 0, r.stderr
    for entry in deviation_report.entries([]):
        assert entry.id in r.stdout


def test_a_report_runs_its_script_and_shows_the_deviation():
    """A DTensor deviation (torch alone): versions, the script, and what it printed here."""
    r = cli("dtensor-view-empty-inner-batch")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "- torch 2." in out and "- Python 3." in out
    assert "```python" in out and "def check(rank" in out
    assert "(this machine: the deviation shows)" in out, out[-2000:]
    assert "expected an output of shape [2, 0, 1], got RuntimeError: integer modulo by zero" in out
    assert out.rstrip().endswith("DEVIATION SHOWN\n```".rstrip())


def test_unknown_deviation_is_one_line_and_exit_2():
    r = cli("no-such-deviation")
    assert r.returncode == 2 and "--list" in r.stderr


def test_a_primitive_refused_on_a_leaf_is_reported_as_modifying_its_input(tp_pool):
    """fairscale's reduce_from marks its input dirty: autograd raises on the suite's leaf input. The report
    says it modifies its input in place (not a crash of the forward), and the forward itself is judged on
    a non-leaf input and passes (the zoo bug's sum is right)."""
    suite = Suite("bug-reduce-from-marks-dirty", tp_pool)
    case = PrimitiveCase(world_size=2, primitive="reduce_from", shape=(3,), dtype="float32")
    inputs = primitives.violations(suite, case, "primitive_leaves_its_inputs_untouched")
    assert inputs and all("modified its input in place (on a leaf input that requires grad it raised RuntimeError: "
                          "a leaf Variable that requires grad" in v.message for v in inputs), inputs
    assert primitives.violations(suite, case, "primitive_forward_matches_its_dense_meaning") == []
    assert primitives.violations(suite, case, "primitive_backward_matches_its_dense_meaning") == []
    reference = Suite("reference", tp_pool)
    assert primitives.violations(reference, case, "primitive_leaves_its_inputs_untouched") == []
