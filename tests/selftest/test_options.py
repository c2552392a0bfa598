"""What users type, read once for every front-end (``conformance/spec/options.py``): each bad value is
one line naming the option; pytest, ``tpconform grade`` and ``tpconform diff`` all read it this way."""

import subprocess
import sys

import pytest
from tpconform.spec.dtypes import DTYPES
from tpconform.spec.options import OptionError, loads_toml, parse_dtypes, parse_world_sizes, read_toml


@pytest.mark.parametrize("text, sizes", [("1-8", list(range(1, 9))), ("2,3,4", [2, 3, 4]), ("4, 1-2", [1, 2, 4])])
def test_world_sizes(text, sizes):
    assert parse_world_sizes(text) == sizes


@pytest.mark.parametrize("text", ["", "0-2", "a", "2-x", ",", "-1"])
def test_bad_world_sizes_are_one_line(text):
    with pytest.raises(OptionError, match=r"^--world-sizes=.*: expected e.g. '1-8' or '2,3,4'$"):
        parse_world_sizes(text)


def test_dtypes():
    assert parse_dtypes(" float32,bfloat16 ") == ["float32", "bfloat16"]
    assert parse_dtypes(",".join(DTYPES)) == list(DTYPES)
    with pytest.raises(OptionError, match=r"^--dtypes=float8: unknown dtype\(s\) \['float8'\]; choose from float32"):
        parse_dtypes("float8")
    with pytest.raises(OptionError, match="^--dtypes=: unknown"):
        parse_dtypes("")


def test_toml(tmp_path):
    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text("a = 1\n")
    bad.write_text("a = [1\n")
    assert read_toml(str(good)) == {"a": 1} and loads_toml("b = 'x'", "M") == {"b": "x"}
    with pytest.raises(OptionError, match=r"^--w=.*bad.toml: not valid TOML: "):
        read_toml(str(bad), f"--w={bad}")
    with pytest.raises(OptionError, match=r"^.*nope.toml: cannot read it: No such file"):
        read_toml(str(tmp_path / "nope.toml"))
    with pytest.raises(OptionError, match=r"^M: not valid TOML"):
        loads_toml("=", "M")


@pytest.mark.parametrize("args, says", [
    (["diff", "--impls=reference,reference", "--world-sizes=0"], "diff: --world-sizes=0: expected e.g."),
    (["diff", "--impls=reference,reference", "--dtypes=float8"], "diff: --dtypes=float8: unknown dtype(s)"),
])
def test_a_front_end_says_it_in_one_line(args, says):
    r = subprocess.run([sys.executable, "-m", "tpconform", *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 4 and r.stderr.strip() == r.stderr.strip().splitlines()[0] and says in r.stderr, r.stderr
