"""The peers (real TP libraries), the known-failures mechanism and the differential mode.

Each peer runs the property suite (``pytest --impl=NAME``, restricted per peer to a CI scope, the
ci profile) in a subprocess, so its library is imported only there and in its workers; its
known deviations must come out as xfail, and nothing may fail. A peer whose library is missing
skips with the install line.
"""

import os
import subprocess
import sys
import textwrap

import pytest
from tpconform.engine.known_failures import KnownFailures, KnownFailuresError
from tpconform.impls.peers import INSTALL, Peer, PeerError, discover, missing, peers, read_peer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(*args, timeout=600):
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def pytest_run(*args, timeout=600):
    return run("-m", "pytest", "-q", "-p", "no:randomly", "--world-sizes=1-4", "--tp-timeout=90", *args,
               timeout=timeout)


# Each peer's CI scope is a field of its record (``PEER = Peer(..., ci_scope=...)`` in impls/peers/<name>.py, with
# the timings that chose it); TPCONFORM_PEERS_FULL=1 runs every peer at the defaults.
@pytest.mark.parametrize("peer", list(peers()))
def test_peer_passes_the_suite_with_its_known_deviations_as_xfail(peer):
    why = missing(peer)
    if why:
        pytest.skip(why)
    scope = [] if os.environ.get("TPCONFORM_PEERS_FULL") else list(peers()[peer].ci_scope)
    r = run("-m", "pytest", "-q", "-p", "no:randomly", f"--impl={peer}", *scope, timeout=900)
    tail = r.stdout[-4000:] + r.stderr[-2000:]
    assert r.returncode == 0, tail
    assert "STALE" not in r.stdout, tail
    print(r.stdout.splitlines()[-1])


def test_missing_library_names_the_install_line():
    fake = Peer("ghost", "no_such_tp_library_xyz", "ghost==1.0")
    assert missing(fake) == f"ghost==1.0 is not installed; install the peers extra: {INSTALL}"
    assert missing("dtensor") is None  # torch alone
    # installed, but not the release series the adapter needs (ColossalAI's line installs transformers 4.x)
    old = Peer("old", "torch", "torch==99.0", "pip install torch==99.0", series="99.")
    why = missing(old)
    assert why.startswith("torch 2.") and "the adapter needs 99.x; install it: pip install torch==99.0" in why


# -- the peers' registry: one file a peer ---------------------------------------------------------
PEERS_DIR = os.path.join(ROOT, "impls", "peers")
GHOST = '''"""A peer added as one file."""
from tpconform.impls.peers import Peer

PEER = Peer(summary="a ghost library", requires="no_such_tp_library_xyz", distribution="ghost==1.0",
            ci_scope=("--world-sizes=1-2",))
'''
GHOST_DEVIATION = '''[[deviation]]
id = "ghost-bug"
impl = "{impl}"
property = "*"
reason = "r"
'''


def _peer_folder(tmp_path, **files: str):
    for name in os.listdir(PEERS_DIR):
        if name.endswith((".py", ".toml")):
            (tmp_path / name).write_text(open(os.path.join(PEERS_DIR, name)).read())
    for name, text in files.items():
        (tmp_path / name.replace("__", ".")).write_text(text)
    return str(tmp_path)


def test_every_peer_is_a_registry_entry_with_its_deviations_and_ci_scope():
    from tpconform.impls.registry import available

    found = peers()
    assert set(found) == {"dtensor", "distnn", "fairscale", "megatron", "deepspeed", "colossalai", "transformers"}
    entries = available()
    for name, peer in found.items():
        assert entries[name].target == f"tpconform.impls.peers.{name}:Impl" and entries[name].summary == peer.summary
        assert peer.deviations == os.path.join(PEERS_DIR, f"{name}.toml") and peer.ci_scope, name
        known = KnownFailures.load([peer.deviations])
        assert known.entries and {e.impl for e in known.entries} == {name}
    assert "dense" not in found  # a helper file declares no PEER


def test_the_record_read_from_the_source_is_the_one_the_module_defines():
    """The registry reads ``PEER`` without importing the library; importing it gives the same record."""
    import tpconform.impls.peers.dtensor as module

    assert read_peer(module.__file__) == Peer(**{**module.PEER.__dict__, "name": "dtensor"})


def test_adding_a_peer_is_adding_its_file(tmp_path):
    found = discover(_peer_folder(tmp_path, ghost__py=GHOST, ghost__toml=GHOST_DEVIATION.format(impl="ghost")))
    ghost = found["ghost"]
    assert ghost.entry.target == "tpconform.impls.peers.ghost:Impl" and ghost.ci_scope == ("--world-sizes=1-2",)
    assert ghost.deviations is None  # a file in the package's own folder, not this copy
    assert missing(ghost) == f"ghost==1.0 is not installed; install the peers extra: {INSTALL}"


@pytest.mark.parametrize("files, says", [
    ({"ghost__toml": GHOST_DEVIATION.format(impl="ghost")}, "ghost.toml: known deviations of no registered peer"),
    ({"ghost__py": GHOST, "ghost__toml": GHOST_DEVIATION.format(impl="dtensor")},
     "entries for impl(s) ['dtensor'] in the deviations of peer 'ghost'"),
    ({"ghost__py": GHOST.replace('"a ghost library"', '"a " + NAME')}, "takes literals only"),
    ({"ghost__py": GHOST.replace("ci_scope=", "colour=")}, "has no field(s) ['colour']"),
])
def test_an_inconsistent_peer_folder_is_one_clear_error(tmp_path, files, says):
    with pytest.raises(PeerError) as exc:
        discover(_peer_folder(tmp_path, **files))
    assert says in str(exc.value) and "\n" not in str(exc.value), str(exc.value)


# -- known failures -----------------------------------------------------------------------------
def _file(tmp_path, body: str) -> str:
    path = tmp_path / "known.toml"
    path.write_text(textwrap.dedent(body))
    return str(path)


ROW_BIAS = """
    [[deviation]]
    id = "row-bias-twice"
    impl = "bug-row-bias-every-rank"
    property = "output_matches_the_dense_layer"
    variant = "row-full-input"
    when = { bias = true, world_size = ">1" }
    message = "{message}"
    reason = "seeded: the bias is added on every rank"
"""


def _forward_run(known: str, impl: str = "bug-row-bias-every-rank"):
    return pytest_run(f"--impl={impl}", f"--known-failures={known}", "--world-sizes=1-3",
                      "tests/properties/test_forward.py", "-k", "output_matches and row-full-input")


def test_a_known_failure_becomes_xfail_with_its_reason(tmp_path):
    r = _forward_run(_file(tmp_path, ROW_BIAS.replace("{message}", "outside tolerance")))
    assert r.returncode == 0, r.stdout[-3000:]
    assert "1 xfailed" in r.stdout and "expected deviation row-bias-twice" in r.stdout, r.stdout[-3000:]


def test_a_failure_the_entry_does_not_explain_still_fails(tmp_path):
    r = _forward_run(_file(tmp_path, ROW_BIAS.replace("{message}", "a message the bug never prints")))
    assert r.returncode == 1, r.stdout[-3000:]
    assert "property violated: output matches the dense layer" in r.stdout
    # the report says which entry was about this case, and why it did not explain it
    assert ("known failure row-bias-twice applies to this case, but its message /a message the bug never prints/ "
            "does not match: rank ") in r.stdout, r.stdout[-3000:]


def test_an_entry_that_matches_nothing_fails_the_run(tmp_path):
    known = _file(tmp_path, ROW_BIAS.replace("{message}", "outside tolerance"))
    r = pytest_run("--impl=reference", f"--known-failures={known}", "--world-sizes=1-3",
                   "tests/properties/test_forward.py", "-k", "output_matches and row-full-input")
    assert r.returncode == 0 or "STALE" not in r.stdout  # the entry names another impl: ignored
    stale = _file(tmp_path, ROW_BIAS.replace("{message}", "outside tolerance")
                  .replace('"bug-row-bias-every-rank"', '"reference"'))
    r = pytest_run("--impl=reference", f"--known-failures={stale}", "--world-sizes=1-3",
                   "tests/properties/test_forward.py", "-k", "output_matches and row-full-input")
    assert r.returncode == 1, r.stdout[-3000:]
    assert "STALE known failure row-bias-twice" in r.stdout and "1 passed" in r.stdout, r.stdout[-3000:]


def test_a_whole_test_entry_is_not_stale_when_its_test_skips(tmp_path):
    """A test that skips itself (TP sub-groups need world size 4 or 6) ran no case: its entry is only noted."""
    known = _file(tmp_path, """
        [[deviation]]
        id = "subgroups-whole-test"
        impl = "reference"
        test = "test_in_every_tp_group_output_matches_the_dense_layer"
        message = "never printed"
        reason = "a whole-test entry whose test skips at world sizes 1-2"
    """)
    r = pytest_run("--impl=reference", f"--known-failures={known}", "--world-sizes=1-2",
                   "tests/properties/test_families.py", "-k", "test_in_every_tp_group_output and row-full-input")
    assert r.returncode == 0 and "STALE" not in r.stdout, r.stdout[-3000:]
    assert "known failure subgroups-whole-test was not exercised" in r.stdout, r.stdout[-3000:]


def test_a_whole_test_entry_may_name_a_list_of_variants(tmp_path):
    """``variant = [..]`` on a whole-test entry (ColossalAI's entries need it) matches any of them."""
    known = _file(tmp_path, """
        [[deviation]]
        id = "row-bias-twice-whole-test"
        impl = "bug-row-bias-every-rank"
        test = "test_output_matches_the_dense_layer"
        variant = ["row-full-input", "row-sliced-input"]
        message = "property violated"
        reason = "seeded: the bias is added on every rank"
    """)
    r = pytest_run("--impl=bug-row-bias-every-rank", f"--known-failures={known}", "--world-sizes=1-3",
                   "tests/properties/test_forward.py", "-k", "output_matches and row")
    assert r.returncode == 0 and "INTERNALERROR" not in r.stdout + r.stderr, r.stdout[-3000:] + r.stderr[-2000:]
    assert "2 xfailed" in r.stdout, r.stdout[-3000:]


@pytest.mark.parametrize("body, says", [
    ("[[deviation]]\nid = 'x'\nimpl = '*'\nproperty = 'no_such_property'\nreason = 'r'\n", "unknown property"),
    ("[[deviation]]\nid = 'x'\nimpl = '*'\nproperty = ['output_matches_the_dense_layer', 'nope']\nreason = 'r'\n",
     "unknown property 'nope'"),
    ("[[deviation]]\nid = 'x'\nimpl = '*'\nproperty = '*'\n", "missing key(s) ['reason']"),
    ("[[deviation]]\nid = 'x'\nimpl = '*'\nproperty = '*'\nreason = 'r'\nwhen = { colour = 1 }\n",
     "unknown 'when' key(s) ['colour']"),
    ("[[deviation]\n", "not valid TOML"),
])
def test_a_bad_known_failures_file_gets_one_clear_line(tmp_path, body, says):
    path = tmp_path / "bad.toml"
    path.write_text(body)
    with pytest.raises(KnownFailuresError) as exc:
        KnownFailures.load([str(path)])
    assert says in str(exc.value) and "\n" not in str(exc.value)


def test_a_bad_known_failures_file_is_a_usage_error_on_the_command_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[[deviation]]\nid = 'x'\nimpl = '*'\nproperty = 'no_such_property'\nreason = 'r'\n")
    r = pytest_run("--impl=reference", f"--known-failures={path}", "--co")
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 4 and len(lines) == 1 and "unknown property" in lines[0], r.stderr


def test_when_conditions_compare_numbers_lists_and_shapes():
    from tpconform.engine.known_failures import Entry
    from tpconform.families.linear.case import LayerCase

    case = LayerCase(kind="row", world_size=3, in_features=1, out_features=4, batch_shape=(2, 0), dtype="float16",
                     bias=True)
    entry = Entry("e", "*", "*", "r", when={"world_size": ">=2", "dtype": ["float16", "bfloat16"],
                                            "batch_numel": 0, "batch_shape": [2, 0], "uneven": True})
    assert entry.applies("x", "output_matches_the_dense_layer", case)
    for when in ({"world_size": "<3"}, {"dtype": "float32"}, {"batch_shape": [[0], [1, 0]]}, {"uneven": False}):
        assert not Entry("e", "*", "*", "r", when=when).applies("x", "p", case), when
    assert not Entry("e", "*", "*", "r", variant="row-sliced-input").applies("x", "p", case)
    both = Entry("e", "*", ["weight_grad_matches_the_dense_layer", "bias_grad_matches_the_dense_layer"], "r")
    assert both.applies("x", "bias_grad_matches_the_dense_layer", case)
    assert not both.applies("x", "output_matches_the_dense_layer", case)


# -- differential -------------------------------------------------------------------------------
def test_differential_reports_where_impls_disagree_and_with_whom(tp_pool):
    from tpconform.cli.differential import Differential
    from tpconform.families.linear.case import LayerCase

    diff = Differential(["reference", "bug-row-bias-every-rank", "reference"], tp_pool)
    case = LayerCase(kind="row", world_size=2, in_features=4, out_features=3, batch_shape=(2,), dtype="float32",
                     bias=True, seed=3)
    report = diff.run_case(case)
    assert not report.clean
    assert report.verdicts[0].unexpected == {} and "output_matches_the_dense_layer" in report.verdicts[1].unexpected
    assert len(report.disagreements) == 2  # the bug against each copy of the reference, never ref vs ref
    assert all("bug-row-bias-every-rank" in m and m.startswith("output") for m in report.disagreements)
    assert diff.run_case(LayerCase(**{**case.as_dict(), "bias": False, "batch_shape": (2,)})).clean
