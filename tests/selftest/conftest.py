"""Self-test fixtures: the mutation score of the seeded-bug zoo, printed at the end of the run."""

import pytest

_score: dict = {"caught": [], "missed": []}


@pytest.fixture(scope="session")
def zoo_score():
    return _score


def pytest_terminal_summary(terminalreporter):
    total = len(_score["caught"]) + len(_score["missed"])
    if total:
        terminalreporter.write_line(f"mutation score: {len(_score['caught'])}/{total} seeded bugs caught")
        for name in _score["missed"]:
            terminalreporter.write_line(f"  missed: {name}")
