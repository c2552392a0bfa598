"""Grading outputs hold against hostile names and text: two submissions with one stem stay two entries,
and whatever a submission controls (its file name, what its code raised) is data in every format —
summary.md (rendered by a real CommonMark parser), the shell replay lines (run by a real bash), the
Gradescope JSON and the HTML pages. Also: Gradescope without not-applicable "failures" or the grader's
paths, and a teacher's matrix that tells load failures apart and greys out properties worth nothing.

Unit tests first (no grading run); then one ``tpconform grade`` run over a folder made here, whose file
names cannot be committed (a newline, ``$(...)``)."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
from tpconform.engine.suite import replay_line
from tpconform.families.linear.verdict import MEASURED_OUTSIDE
from tpconform.grading import bwrap, gradescope, logs, markdown_safe, report, student_view
from tpconform.grading.submissions import Submission, discover, with_keys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "selftest", "fixtures")
UNSANDBOXED = [] if bwrap.unavailable() is None else ["--unsandboxed"]
NEWLINE_NAME = "evil\n| alice | **0** / 110 | FORGED ROW: flagged for plagiarism |\n```<b>x</b>.py"
PWNED_NAME = "r$(touch PWNED).py"
NASTY = [NEWLINE_NAME, PWNED_NAME, "a`b``c `touch PWNED`", "_x_ *y* [l](http://e) <i>&amp; \\ |", "q'uote\"s; rm -rf ~",
         "\udcff\u202eright-to-left", "tab\there", "--impl=x", "-", ""]


# -- names: unique keys -------------------------------------------------------------------------------
def test_a_file_and_a_folder_with_one_stem_are_two_entries_with_their_own_keys(tmp_path):
    shutil.copy(os.path.join(FIXTURES, "grading", "reference_copy.py"), tmp_path / "alice.py")
    (tmp_path / "alice").mkdir()
    (tmp_path / "alice" / "tpconform.toml").write_text('impl = "layer.py"\n')
    (tmp_path / "alice" / "layer.py").write_text("x = 1\n")
    (tmp_path / "bob.py").write_text("x = 1\n")
    subs = {s.name: s for s in discover(str(tmp_path))}
    assert set(subs) == {"alice", "alice.py", "bob"}  # only the shared stem becomes the entry name
    assert subs["alice"].kind == "package" and subs["alice.py"].kind == "file"
    assert len({s.key for s in subs.values()}) == 3 and subs["bob"].key == "bob"


def test_names_that_are_not_plain_get_unique_plain_keys():
    names = [n for n in NASTY if n] + ["x.py.py", "x", "a b", "a_b"]
    subs = with_keys([Submission(n[:-3] if n.endswith(".py") else n, "/subs/" + n, "file") for n in names]
                     + [Submission("x.py", "/subs/x.py", "file")])
    keys = [s.key for s in subs]
    assert len(set(keys)) == len(keys) and len({s.name for s in subs}) == len(subs)
    for s in subs:
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,120}", s.key), s.key
        s.name.encode("utf-8")  # every report can hold it (a byte that is not UTF-8 became an escape)


# -- shell lines: one word per argument, nothing runs ---------------------------------------------------
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_every_replay_line_is_one_line_that_bash_reads_back_as_the_same_arguments(tmp_path):
    for arg in NASTY:
        line = replay_line(arg, "tok'en $(touch PWNED)", "output_matches_the_dense_layer")
        assert "\n" not in line and line.isprintable(), line
        words = _bash_words(line.replace("python -m tpconform replay", "", 1), tmp_path)
        assert words == [f"--impl={arg}", "tok'en $(touch PWNED)", "--property=output_matches_the_dense_layer"]
    assert not os.path.exists(tmp_path / "PWNED")


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("name", [n.replace("/", "∕") for n in NASTY if n.endswith(".py")])  # a file name has no "/"
def test_the_student_replay_line_names_their_file_and_runs_nothing(name, tmp_path):
    failure = {"property": "output_matches_the_dense_layer", "minimal_example": {"token": "kind=row,seed=1"}}
    line = report.student_replay(failure, {"path": "/home/teacher/subs/" + name, "kind": "file", "impl": ""})
    assert _bash_words(line.replace("python -m tpconform replay", "", 1), tmp_path) == [
        f"--impl={name}", "kind=row,seed=1", "--property=output_matches_the_dense_layer"]
    assert not os.path.exists(tmp_path / "PWNED")


def _bash_words(words: str, cwd) -> list:
    out = subprocess.run(["bash", "-c", f"printf '%s\\0' {words}"], cwd=cwd, capture_output=True, timeout=30,
                         check=True).stdout
    return [w.decode("utf-8", "surrogateescape") for w in out.split(b"\0")[:-1]]


# -- Markdown: a real CommonMark parser with GitHub's tables ---------------------------------------------
def _render(md: str) -> str:
    markdown_it = pytest.importorskip("markdown_it", reason="markdown-it-py renders the Markdown (pip install markdown-it-py)")
    return markdown_it.MarkdownIt("commonmark").enable("table").render(md)


def _cells(html: str) -> list:
    import html as html_lib

    return [[html_lib.unescape(c) for c in re.findall(r"<td>(.*?)</td>", row, re.DOTALL)]
            for row in re.findall(r"<tr>(.*?)</tr>", html.split("<tbody>", 1)[1], re.DOTALL)]


def test_markdown_cells_render_as_their_own_text_and_add_no_row():
    table = "| name | x |\n|---|---|\n" + "".join(f"| {markdown_safe.text(n)} | 1 |\n" for n in NASTY)
    assert _cells(_render(table)) == [[markdown_safe.visible(n).strip(), "1"] for n in NASTY]


def test_markdown_code_spans_hold_any_text():
    for n in NASTY:
        if n.strip():
            got = re.findall(r"<code>(.*?)</code>", _render("- " + markdown_safe.code(n) + "\n"), re.DOTALL)
            import html as html_lib

            assert [html_lib.unescape(g) for g in got] == [markdown_safe.visible(n)], n


# -- the student's view, Gradescope, the log --------------------------------------------------------------
def _sub(path, kind="file", impl=None):
    failure = (f"case: x\nTraceback: File \"/submission/{os.path.basename(path)}\", line 3\n"
               f"File \"{bwrap.SUITE_MOUNT}/tpconform/engine/suite.py\", line 9\n"
               f"File \"/tmp/tpconform-sub-ab12_x/submission/alice.py\", line 4\n"
               f"replay: {replay_line(impl or path, 'tok', 'output_matches_the_dense_layer')}")
    cell = {"verdict": "fail", "reason": "wrong", "failure": failure,
            "minimal_example": {"token": "tok", "description": "d", "shrunk": True,
                                "replay": replay_line(impl or path, "tok", "output_matches_the_dense_layer")}}
    return {"name": "alice", "key": "alice", "path": path, "kind": kind, "impl": impl, "total": 5.0, "max": 110.0,
            "why": f"it could not be loaded: --impl={path}: importing it failed", "failures": [],
            "properties": {
                "output_matches_the_dense_layer": {"verdict": "partial", "score": 5.0, "max": 25.0, "reason": "wrong",
                                                   "variants": {"row-sliced-input": cell}},
                "inputs_are_left_untouched": {"verdict": "pass", "score": 0.0, "max": 0.0, "reason": None, "variants": {}},
                "mlp_output_matches_the_dense_mlp": {"verdict": "n/a", "score": 0.0, "max": 0.0,
                                                     "reason": "no variant applies", "variants": {}}}}


def test_the_student_view_and_gradescope_carry_no_path_of_the_grader():
    grader = "/home/teacher/class/subs/alice.py"
    seen = student_view.view(_sub(grader))
    results = gradescope.results(seen)
    text = json.dumps(results)
    for path in ("/home/teacher", "/submission/", bwrap.SUITE_MOUNT, "/tmp/tpconform-sub-"):
        assert path not in text, path
    assert "alice.py" in text and "--impl=alice.py" in text
    cell = seen["properties"]["output_matches_the_dense_layer"]["variants"]["row-sliced-input"]
    assert cell["minimal_example"]["replay"].startswith("python -m tpconform replay --impl=alice.py ")


def test_gradescope_lists_no_not_applicable_property_as_a_failure_and_keeps_exact_names():
    results = gradescope.results(student_view.view(_sub("/subs/alice.py")))
    tests = {t["name"]: t for t in results["tests"]}
    assert set(tests) == {"output_matches_the_dense_layer", "inputs_are_left_untouched"}  # exact names, no n/a
    assert tests["inputs_are_left_untouched"]["status"] == "passed" and tests["inputs_are_left_untouched"]["max_score"] == 0
    assert tests["output_matches_the_dense_layer"]["status"] == "failed"
    assert "mlp_output_matches_the_dense_mlp" in results["output"]  # listed as not applicable, not as a test
    assert results["output_format"] == "text" and all(t["output_format"] == "text" for t in results["tests"])


def test_the_log_tail_drops_the_c10d_hostname_noise_and_folds_repeats():
    noise = "[W1206 socket.cpp:752] [c10d] The hostname of the client socket cannot be retrieved. err=-3"
    text = "\n".join([noise] * 50 + ["Traceback (most recent call last):"] + ["  same"] * 4 + [noise, "ValueError: x"])
    assert logs.without_noise(text).splitlines() == ["Traceback (most recent call last):", "  same",
                                                     "  [the line above 3 more times]", "ValueError: x"]


@pytest.mark.parametrize("unusable, label", [
    ("--impl=/s/x.py: importing it failed: SyntaxError: invalid syntax (x.py, line 1)", "syntax"),
    ("--impl=/s/x.py: importing it failed: ModuleNotFoundError: No module named 'nope'", "import"),
    ("--impl=x.py: it lacks ColumnParallelLinear and RowParallelLinear (simple-module convention)", "no class"),
    ("loading it did not complete: rank 0 exited", "load"),
])
def test_load_failures_are_told_apart(unusable, label):
    assert report.load_problem({"status": "done", "unusable": unusable})["label"] == label
    assert report.load_problem({"problem": "not a .py file or a folder"})["label"] == "rejected"
    assert report.load_problem({"status": "done", "unusable": None}) is None


def test_bar_labels_wrap_at_word_boundaries():
    cause = "the bias is added on every rank, before the all-reduce " * 4
    rows = [{"signature": "s", "scope": "contract", "count": 1, "of": 2, "cause": cause, "property": "p"}]
    bar = report.class_plot(rows)["bars"][0]
    words = set(bar["label"].split())
    assert len(bar["lines"]) > 1 and all(len(line) <= report.LABEL_CHARS for line in bar["lines"])
    assert all(w in words or w == "…" for line in bar["lines"] for w in line.split())


# -- one grading run over hostile names ------------------------------------------------------------------
@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    base = tmp_path_factory.mktemp("names")
    folder, out = base / "subs", base / "report"
    folder.mkdir()
    grading = os.path.join(FIXTURES, "grading")
    shutil.copy(os.path.join(grading, "reference_copy.py"), folder / "alice.py")
    (folder / "alice").mkdir()  # a do-nothing package with the same stem
    (folder / "alice" / "tpconform.toml").write_text('impl = "layer.py"\n')
    shutil.copy(os.path.join(FIXTURES, "hostile_sandbox", "donothing.py"), folder / "alice" / "layer.py")
    shutil.copy(os.path.join(grading, "bug_bias_every_rank.py"), folder / PWNED_NAME)
    shutil.copy(os.path.join(grading, "reference_copy.py"), folder / NEWLINE_NAME.replace("/", "∕"))
    shutil.copy(os.path.join(FIXTURES, "grading_names", "hostile_text.py"), folder / "hostile_text.py")
    (folder / "syntax_error.py").write_text("def f(:\n")
    (folder / "import_error.py").write_text("import no_such_module_for_tpconform\n")
    (folder / "no_class.py").write_text("x = 1\n")
    # float32 only (CI time): names do not depend on the dtype
    cmd = [sys.executable, "-m", "tpconform", "grade", str(folder), "--out", str(out), "--world-sizes=2",
           "--dtypes=float32", "--examples=3", "--timeout=60", "--seed=0", "--jobs=2", "--no-progress", "--gradescope", *UNSANDBOXED]
    r = subprocess.run(cmd, cwd=base, capture_output=True, text=True, timeout=900, check=False)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    with open(out / "report.json") as fh:
        rep = json.load(fh)
    return {"out": out, "base": base, "report": rep, "subs": {s["name"]: s for s in rep["submissions"]}}


def test_two_submissions_with_one_stem_are_graded_as_two(graded):
    subs = graded["subs"]
    assert subs["alice.py"]["total"] == subs["alice.py"]["max"]
    assert subs["alice"]["total"] < subs["alice.py"]["total"] / 2  # the do-nothing package, not a copy of alice.py
    keys = [s["key"] for s in graded["report"]["submissions"]]
    assert len(set(keys)) == len(keys) == 8
    stored = sorted(os.listdir(graded["out"] / "submissions"))
    assert stored == sorted(f"{k}.json" for k in keys)
    assert sorted(os.listdir(graded["out"] / "gradescope")) == sorted(keys)
    for s in graded["report"]["submissions"]:
        with open(graded["out"] / "gradescope" / s["key"] / "results.json") as fh:
            assert json.load(fh)["score"] == s["total"], s["name"]


def test_summary_md_has_one_row_per_submission_and_every_text_as_itself(graded):
    with open(graded["out"] / "summary.md") as fh:
        md = fh.read()
    html = _render(md)
    first_table = html.split("</table>", 1)[0]
    rows = _cells(first_table)
    assert [r[0] for r in rows] == [markdown_safe.visible(s["name"]) for s in graded["report"]["submissions"]]
    assert "<script" not in html and "<b>" not in html and not re.search(r"^\| *forged", md, re.MULTILINE | re.I)


def _replay_lines(graded):
    """Every replay line of every output: summary.md's code spans, the student pages, Gradescope."""
    import html as html_lib

    with open(graded["out"] / "summary.md") as fh:
        md_html = _render(fh.read())
    lines = [html_lib.unescape(c) for c in re.findall(r"<code>(python -m tpconform replay .*?)</code>", md_html)]
    for s in graded["report"]["submissions"]:
        with open(graded["out"] / s["page"]) as fh:
            lines += [html_lib.unescape(p) for p in re.findall(r'<pre class="replay">(.*?)</pre>', fh.read(), re.DOTALL)]
        with open(graded["out"] / "gradescope" / s["key"] / "results.json") as fh:
            lines += re.findall(r"^replay: (.*)$", json.load(fh)["output"], re.MULTILINE)
    return lines


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_every_replay_line_in_every_output_names_the_file_and_runs_nothing(graded, tmp_path):
    lines = _replay_lines(graded)
    student = [ln for ln in lines if "PWNED" in ln]
    assert len(student) >= 3, lines  # summary.md, the student page and Gradescope all show the bias bug's replay
    for line in lines:
        words = _bash_words(line.replace("python -m tpconform replay", "", 1), tmp_path)
        assert words[0].startswith("--impl=") and len(words) in (2, 3), (line, words)
    assert any(w == f"--impl={PWNED_NAME}" for ln in student for w in _bash_words(ln[26:], tmp_path))
    assert not os.path.exists(tmp_path / "PWNED") and not os.path.exists(graded["base"] / "PWNED")


def test_gradescope_and_student_pages_show_no_path_of_the_grader(graded):
    for s in graded["report"]["submissions"]:
        with open(graded["out"] / "gradescope" / s["key"] / "results.json") as fh:
            text = fh.read()
        with open(graded["out"] / s["page"]) as fh:
            text += fh.read()
        for path in (str(graded["base"]), ROOT, bwrap.SUBMISSION_MOUNT + "/", bwrap.SUITE_MOUNT, "/tpconform-sub-"):
            assert path not in text, (s["name"], path)


def test_the_html_escapes_what_the_submission_raised(graded):
    sub = graded["subs"]["hostile_text"]
    assert any("FORGED ROW" in (f["cause"] + f["failure"]) for f in sub["failures"])
    for page in ("index.html", sub["page"]):
        with open(graded["out"] / page) as fh:
            text = fh.read()
        assert "<script>" not in text and "&lt;script&gt;" in text, page
    import html as html_lib

    with open(graded["out"] / "index.html") as fh:  # a name's newlines show as \n, not as a line break
        assert html_lib.escape(markdown_safe.visible(NEWLINE_NAME[:-3].replace("/", "∕")), quote=False) in fh.read()


def test_the_matrix_tells_load_failures_apart_and_greys_out_properties_worth_nothing(graded):
    with open(graded["out"] / "index.html") as fh:
        page = fh.read()
    rows = dict(re.findall(r'<tr data-submission="([^"]+)">(.*?)</tr>', page, re.DOTALL))
    for name, label in (("syntax_error", "syntax"), ("import_error", "import"), ("no_class", "no class")):
        assert set(re.findall(r'data-problem="([^"]+)"', rows[name])) == {label}, name
    free = [p["name"] for p in graded["report"]["properties"] if not p["weight"]]
    if UNSANDBOXED:  # a check measured outside the candidate: worth nothing in a run without the sandbox
        free += [p for p in MEASURED_OUTSIDE if p not in free]
    assert free
    cells = re.findall(r'<td class="cell ([^"]+)" data-verdict="([^"]+)"[^>]*>([^<]*)</td>', rows["alice.py"])
    assert sum("nopoints" in c for c, _, _ in cells) == len(free)
    assert all(text == verdict for c, verdict, text in cells if "nopoints" in c)  # "pass", not a green "0"


def test_the_teacher_page_does_not_scroll_sideways_at_1400_px(graded, tmp_path):
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium); the layout check needs a real browser")
    with open(graded["out"] / "index.html") as fh:
        page = fh.read()
    probe = tmp_path / "index.html"  # the page, and a script that writes its widths into the DOM
    probe.write_text(page.replace("</body>", "<script>document.body.dataset.widths = document.documentElement"
                                             ".scrollWidth + ' ' + document.documentElement.clientWidth</script></body>"))
    dom = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,1000", "--dump-dom",
                          f"file://{probe}"], capture_output=True, text=True, timeout=120, check=False).stdout
    scroll, client = map(int, re.search(r'data-widths="(\d+) (\d+)"', dom).groups())
    assert scroll <= client, (scroll, client)
