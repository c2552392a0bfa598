"""Self-test fixtures: the mutation score of the seeded-bug zoo, printed at the end of the run (with
pytest-xdist, each worker hands its part to the controller, which prints the sum); and the order in which
CI's two workers take the files: the heavy ones first.

``HEAVY`` lists the files of a minute or more in CI (their tests' ``--durations`` summed, seconds; only the
order reads them). Their tests are collected first, the heaviest first, the rest in their own order: with
``--dist loadfile --no-loadscope-reorder`` (``.ci/run``) each worker starts on a heavy file and the light
ones fill in after, so the two finish together instead of one starting a two-minute file when the other is
done (xdist's own order, most tests first, puts the files that grade one folder in a module fixture, a few
tests each, near the end).
"""

import pytest

_score: dict = {"caught": [], "missed": []}


@pytest.fixture(scope="session")
def zoo_score():
    return _score


# seconds in CI, December 2026 (2 workers): each file's tests' --durations summed, from a CI rehearsal on this
# machine (pytest 1,238 s, load 6-17). A file renamed, or added heavy without a line here, only starts later:
# nothing is skipped
HEAVY = {"test_gate.py": 323, "test_peers.py": 258, "test_grading.py": 174, "test_grading_zoo.py": 155,
         "test_default_run.py": 153, "test_sandbox_grading.py": 123, "test_benchmark_task.py": 110,
         "test_grading_contract.py": 105, "test_reports.py": 103, "test_readme.py": 100, "test_cli.py": 99,
         "test_extensions.py": 88, "test_known_failures.py": 84, "test_grading_names.py": 63,
         "test_grading_families.py": 42, "test_reliability.py": 39, "test_torchrun.py": 39,
         "test_sandbox_budget.py": 38, "test_zoo.py": 35, "test_declared_limits.py": 32, "test_parallelism_grading.py": 32}


def pytest_collection_modifyitems(items):
    # stable: a module's tests stay together and in order, and so do the light files
    items.sort(key=lambda item: -HEAVY.get(item.path.name, 0) if "selftest" in item.path.parts else 0)


def pytest_sessionfinish(session):
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: its part of the score goes to the controller
        workeroutput["zoo_score"] = {k: list(v) for k, v in _score.items()}


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    part = getattr(node, "workeroutput", {}).get("zoo_score")
    if part:
        for key in _score:
            _score[key].extend(part.get(key, []))


def pytest_terminal_summary(terminalreporter):
    total = len(_score["caught"]) + len(_score["missed"])
    if total:
        terminalreporter.write_line(f"mutation score: {len(_score['caught'])}/{total} seeded bugs caught")
        for name in sorted(_score["missed"]):
            terminalreporter.write_line(f"  missed: {name}")

