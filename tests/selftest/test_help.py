"""Every subcommand's ``--help`` reads as usage: complete, every option explained, no source markup."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import pytest
from tpconform.__main__ import build_parser

MARKUP = re.compile(r"``|:(mod|class|func|data|meth):`")


PASS_THROUGH = ("check", "torchrun")  # their arguments are pytest's: their help is written by hand


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return {name: p for name, p in sub.choices.items() if name not in PASS_THROUGH}


def _help(*args: str) -> str:
    r = subprocess.run([sys.executable, "-m", "tpconform", *args, "--help"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_the_top_level_help_lists_every_subcommand_with_a_sentence():
    text = _help()
    assert not MARKUP.search(text), text
    for name, action in ((a.dest, a) for a in build_parser()._actions[1]._choices_actions):  # type: ignore[attr-defined]
        assert action.help and len(action.help) > 15 and name in text


@pytest.mark.parametrize("name", sorted(_subcommands()))
def test_every_option_of_every_subcommand_says_what_it_does(name):
    parser = _subcommands()[name]
    unexplained = [a.option_strings or a.dest for a in parser._actions
                   if a.help in (None, "") and not isinstance(a, argparse._HelpAction)]
    assert unexplained == [], f"tpconform {name}: options without help: {unexplained}"
    text = _help(name)
    assert text.startswith("usage: tpconform " + name) and not MARKUP.search(text), text


@pytest.mark.parametrize("name", PASS_THROUGH)
def test_the_pytest_passing_subcommands_have_usage_of_their_own(name):
    """``check`` and ``torchrun`` hand their arguments to pytest, so their help is written by hand."""
    text = _help(name)
    assert "usage:" in text and "--impl=SPEC" in text and re.search("exit code", text, re.I), text
    assert not MARKUP.search(text), text
