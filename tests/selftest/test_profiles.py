"""The Hypothesis profiles behind ``--tp-profile``: what each promises, checked on the settings."""

import pytest
from hypothesis.database import DirectoryBasedExampleDatabase
from tpconform.engine import profiles


def test_ci_is_reproducible_and_keeps_no_database():
    s = profiles.build("ci", "reference")
    assert s.derandomize and s.database is None


def test_dev_is_random_with_a_database_kept_per_impl(tmp_path):
    a, b = (profiles.build("dev", impl, db_root=str(tmp_path)) for impl in ("reference", "mypkg.tp:Impl"))
    assert not a.derandomize and isinstance(a.database, DirectoryBasedExampleDatabase)
    assert a.database.path != b.database.path  # one impl's saved failures never replay against another
    assert profiles.build("dev", "reference", db_root=str(tmp_path)).database.path == a.database.path


def test_thorough_runs_many_more_examples_than_ci():
    assert profiles.build("thorough", "x").max_examples >= 10 * profiles.build("ci", "x").max_examples


def test_an_unknown_profile_is_refused():
    with pytest.raises(ValueError, match="unknown profile 'fast'"):
        profiles.activate("fast", "reference")
