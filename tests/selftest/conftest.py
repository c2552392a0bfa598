"""Self-test fixtures: the mutation score of the seeded-bug zoo, printed at the end of the run (with
pytest-xdist, each worker hands its part to the controller, which prints the sum)."""

import pytest

_score: dict = {"caught": [], "missed": []}


@pytest.fixture(scope="session")
def zoo_score():
    return _score


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

