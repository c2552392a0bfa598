"""Every command in the README is run by a test, so the README and the behaviour cannot drift apart.

Each shell command in the README's ``bash`` blocks is claimed below by exactly one line of
:data:`CLAIMS`: either it runs here (its placeholders filled from fixtures, with options that keep it
short appended), or it names the self-test that runs it (that test must exist), or it says why no test
can (an install of a library CI does not install). A new README command without a claim fails
:func:`test_every_readme_command_is_claimed`.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "selftest", "fixtures")
SHORT = ["--world-sizes=1-2", "--tp-timeout=120", "-k", "output_matches or weight_grad"]  # appended here: CI time


@dataclass(frozen=True)
class Claim:
    pattern: str  # a regular expression the whole command matches
    run: tuple = ()  # run here: (extra args, expected exit code)
    by: str = ""  # or: "tests/selftest/test_x.py::test_name" runs it
    why_not: str = ""  # or: why no test runs it


CLAIMS = [
    Claim(r"python3 -m venv \.venv && .* -e \. && pytest --impl=reference", by="tests/properties/test_case_classes.py::test_every_property_holds_in_every_case_class"),
    Claim(r"python3 -m venv \.venv && .* -e '\.\[dev\]' && pytest tests -n 2 --dist loadfile --no-loadscope-reorder", by=".ci/run"),
    Claim(r"pytest --impl=path/to/parallel_linear\.py", run=(SHORT, 0)),
    Claim(r"pytest --impl=mypkg\.tp:MyImpl", run=(SHORT, 0)),
    Claim(r"pytest --impl=NAME", run=(SHORT, 0)),
    Claim(r"pip wheel --no-deps -w ci/ PATH/TO/tpconform-clone", by="tests/selftest/test_gate.py::test_the_wheel_finds_every_package"),
    Claim(r"pip install torch==2\.13\.0 ci/tpconform-0\.1\.0-py3-none-any\.whl -e \.", by="tests/selftest/test_gate.py::test_a_conforming_impl_passes_the_gate_with_a_junit_report"),
    Claim(r"tpconform check --impl=theirpkg\.tp:Adapter --junitxml=tp-report\.xml", by="tests/selftest/test_gate.py::test_a_conforming_impl_passes_the_gate_with_a_junit_report"),
    Claim(r"python -m tpconform replay --impl=bug-row-bias-every-rank .*", run=((), 1)),
    Claim(r"pytest --impl=(dtensor|distnn|fairscale|megatron|deepspeed|colossalai|transformers)", by="tests/selftest/test_peers.py::test_peer_passes_the_suite_with_its_known_deviations_as_xfail"),
    Claim(r"pip install -e '\.\[peers\]'", by=".ci/run"),
    Claim(r"(DS_BUILD_OPS=0 )?pip install --no-deps (deepspeed|colossalai|transformers).*", by="tests/selftest/test_peers.py::test_missing_library_names_the_install_line",
          why_not="CI does not install DeepSpeed (a 1.5-3.5 min compile), ColossalAI (~80 s, 17 min suite) or transformers (its suite at 1-3 ranks: 45 min): their install lines are checked as the ones the suite prints"),
    Claim(r"tox -e peers-current", why_not="needs Python 3.12 and the multi-GB CUDA build of torch; run by hand (README's peer table)"),
    Claim(r"python -m tpconform diff --impls=.*", run=(["--examples=1", "--world-sizes=1-2"], 0)),
    Claim(r"python -m tpconform report-deviation --list", run=((), 0)),
    Claim(r"python -m tpconform report-deviation megatron-primitive-reduce-from-in-place", run=((), 0)),
    Claim(r"python -m tpconform report-deviation ID --no-run", run=((), 0)),
    Claim(r"tpconform grade SUBMISSIONS/ --out report/ .*", run=(["--world-sizes=1-2", "--examples=2"], 0)),
    Claim(r"torchrun --standalone --nproc-per-node=4 -m tpconform torchrun --impl=mypkg\.tp:MyImpl", by="tests/selftest/test_torchrun.py::test_reference_passes_on_a_standalone_launch"),
    Claim(r"torchrun --nnodes=2 .*", by="tests/selftest/test_torchrun.py::test_two_nodes_with_c10d_rendezvous"),
    Claim(r"torchrun --standalone --nproc-per-node=2 -m tpconform torchrun --impl=reference -k forward -- .*", by="tests/selftest/test_torchrun.py::test_a_seeded_bug_fails_and_the_report_names_the_property"),
]


def readme_commands() -> list[str]:
    """The shell commands of the README's bash blocks: continuation lines joined, comments dropped."""
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in re.sub(r"\\\n\s*", "", block).splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def claim_of(command: str) -> list[Claim]:
    return [c for c in CLAIMS if re.fullmatch(c.pattern, command)]


def test_every_readme_command_is_claimed():
    unclaimed = [c for c in readme_commands() if len(claim_of(c)) != 1]
    assert unclaimed == [], f"README commands with no (or several) claims in {__file__}: {unclaimed}"
    unused = [c.pattern for c in CLAIMS if not any(re.fullmatch(c.pattern, cmd) for cmd in readme_commands())]
    assert unused == [], f"claims for commands the README no longer has: {unused}"


def test_every_named_test_exists():
    for claim in CLAIMS:
        if not claim.by or "::" not in claim.by:
            assert claim.run or claim.why_not or os.path.exists(os.path.join(ROOT, claim.by)), claim
            continue
        path, name = claim.by.split("::")
        with open(os.path.join(ROOT, path)) as f:
            assert re.search(rf"^def {name}\(", f.read(), flags=re.M), f"{claim.by} does not exist"


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory):
    """A user's folder with what the README's placeholders stand for."""
    base = tmp_path_factory.mktemp("readme-user")
    os.makedirs(base / "path" / "to")
    shutil.copy(os.path.join(FIXTURES, "simple_module_good.py"), base / "path" / "to" / "parallel_linear.py")
    os.makedirs(base / "mypkg")
    (base / "mypkg" / "__init__.py").write_text("")
    (base / "mypkg" / "tp.py").write_text("from tpconform.impls.reference import ReferenceImpl as MyImpl  # noqa: F401\n")
    os.makedirs(base / "SUBMISSIONS")
    shutil.copy(os.path.join(FIXTURES, "simple_module_good.py"), base / "SUBMISSIONS" / "alice.py")
    return str(base)


def _filled(command: str) -> list[str]:
    """The command's words, placeholders filled: a registry NAME, a deviation ID, optional [...] parts left out."""
    command = re.sub(r" \[[^\]]*\]", "", command)
    words = shlex.split(command)
    words = [w.replace("--impl=NAME", "--impl=reference") for w in words]
    if words[:4] == ["python", "-m", "tpconform", "report-deviation"] and "ID" in words:
        from tpconform.engine.known_failures import (
            KnownFailures,
            default_files,  # the peers. own deviations
        )

        entries = KnownFailures.load(default_files("dtensor")).entries
        words[words.index("ID")] = entries[0].id
    if words[0] == "python":
        words[0] = sys.executable
    elif words[0] in ("pytest", "tpconform"):
        words[0] = os.path.join(os.path.dirname(sys.executable), words[0])
    return words


RUN_HERE = [c for c in readme_commands() if any(claim.run for claim in claim_of(c))]


@pytest.mark.parametrize("command", RUN_HERE, ids=[c[:60] for c in RUN_HERE])
def test_the_readme_command_runs_as_written(command, user_folder):
    (claim,) = claim_of(command)
    extra, exit_code = claim.run
    words = _filled(command) + list(extra)
    if words[1:2] == ["grade"] and not shutil.which("bwrap"):
        words.append("--unsandboxed")  # the sandbox has its own tests (test_sandbox_grading.py)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HYPOTHESIS", "TPCONFORM"))}
    r = subprocess.run(words, cwd=user_folder, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == exit_code, f"{shlex.join(words)}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    if words[1:2] == ["grade"]:
        assert os.path.exists(os.path.join(user_folder, "report", "summary.md"))
