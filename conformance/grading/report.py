"""The reports of a grading run: ``report.json`` (schema in docs/GRADING.md), ``summary.md``,
``index.html`` (the submission × property matrix), a page per student and, optionally, Gradescope
``results.json`` files.

Whatever a submission controls (its file name, what its code raised or printed) is data in every
format: Markdown cells escaped (:mod:`tpconform.grading.markdown_safe`), shell lines one quoted word
per argument (:func:`tpconform.engine.suite.replay_line`), JSON written by ``json``, HTML escaped by
Jinja's autoescape."""

from __future__ import annotations

import json
import os
import re
import textwrap

import jinja2
from tpconform.engine.shell import replay_line
from tpconform.grading import catalog, student_view
from tpconform.grading import gradescope as gradescope_results
from tpconform.grading.gradescope import KIND_WORDS
from tpconform.grading.logs import without_noise
from tpconform.grading.markdown_safe import code as md_code
from tpconform.grading.markdown_safe import text as md
from tpconform.grading.markdown_safe import visible
from tpconform.grading.records import write_atomic
from tpconform.grading.scoring import VERDICTS, score_submission
from tpconform.grading.signature import Signature

SCHEMA = "tpconform-grading/1"
# background colour per verdict (the HTML matrix; the screenshot test looks for these exact colours)
COLOURS = {
    "pass": "#1b873f", "partial": "#e0a000", "fail": "#c62828", "not-declared": "#ef6c00",
    "crash": "#6a1b9a", "hang": "#1565c0", "timeout": "#37474f", "cheat": "#000000", "error": "#795548",
    "n/a": "#bdbdbd",
}
assert set(COLOURS) == set(VERDICTS)
# the class view's bars: failures inside the contract, and beyond it (the screenshot test looks for them)
BAR_COLOURS = {"contract": "#d81b60", "beyond": "#00897b"}
STUDENTS_DIR = "students"
# why a submission scored "error" everywhere, as the matrix shows it (label, the words of its title)
LOAD_PROBLEMS = (
    (re.compile(r"\b(?:SyntaxError|IndentationError|TabError)\b"), "syntax", "a syntax error"),
    (re.compile(r"\blacks\b|\bhas no\b|\bnot found in\b|\bno (?:class|attribute|object)\b"), "no class",
     "a required class is missing"),
    (re.compile(r"importing it failed|\b(?:ModuleNotFound|Import)Error\b"), "import", "importing it failed"),
)


def load_problem(result: dict) -> dict | None:
    """Why the submission could not be graded at all, as ``{"label", "what"}`` (``None``: it could):
    not a submission, a syntax error, a failed import, a missing class, or another load failure."""
    if result.get("problem"):
        return {"label": "rejected", "what": "not a gradable submission"}
    unusable = result.get("unusable")
    if not unusable:
        return None
    for pattern, label, what in LOAD_PROBLEMS:
        if pattern.search(unusable):
            return {"label": label, "what": what}
    return {"label": "load", "what": "it could not be loaded"}


def build(run: dict, records: list[dict], weights) -> dict:
    """The JSON report: the run, then per submission, per property, per variant."""
    subs = []
    for rec in records:
        result = rec.get("result", {})
        scored = score_submission(result, weights, run.get("contract"),
                                  sandboxed=not str(run.get("sandbox") or "").startswith("none"))
        teacher_impl = rec.get("impl") or rec.get("path", "")
        for prop, v in scored["properties"].items():
            for cell in v["variants"].values():
                ex = cell.get("minimal_example")
                if ex:  # rebuilt here, never taken as the sandbox wrote it
                    cell["minimal_example"] = {**ex, "replay": replay_line(teacher_impl, ex["token"], prop)}
        for f in scored["failures"]:
            f["signature"] = signature_key(f)
            f["student_replay"] = student_replay(f, rec)
        key = rec.get("key") or re.sub(r"[^A-Za-z0-9._-]", "_", rec["name"])[:80]
        subs.append({
            "page": f"{STUDENTS_DIR}/{key}.html", "key": key,
            "name": rec["name"], "path": rec["path"], "kind": rec["kind"], "impl": rec.get("impl") or None,
            "sha256": rec.get("sha256"), "status": result.get("status", "not-run"),
            "seconds": result.get("seconds"), "declared": result.get("describe"), **scored,
            "load_problem": load_problem(result),
            "undeclared": undeclared(scored), "not_checked": not_checked(scored), "coverage": coverage(scored),
            "log_tail": without_noise(result.get("log_tail", "")), "sandbox": result.get("sandbox"),
            "narrowed": result.get("narrowed"), "suspicious": result.get("suspicious", []),
        })
    return {"schema": SCHEMA, "run": run,
            # the matrix: the linear layers' properties; another family's show in a submission's own
            # section (and its total) where it offers that family
            "properties": [{"name": p, "weight": w} for p, w in weights.points.items()],
            "family_properties": [{"name": p, "weight": w} for p, w in weights.family_points.items()
                                  if any(s["properties"][p]["max"] > 0 for s in subs)],
            "variants": list(catalog.PRIMARY_VARIANTS), "submissions": subs, "class_view": class_view(subs)}


def coverage(scored: dict) -> dict:
    """Per variant judged under a contract: [classes of the contract its cases met, classes in all]."""
    out: dict = {}
    for v in scored["properties"].values():
        for variant, cell in v["variants"].items():
            if cell.get("classes"):
                out.setdefault(variant, cell["classes"])
    return out


def undeclared(scored: dict) -> list[str]:
    """The required variants (the contract's, or weights.toml's) the submission does not declare: each
    counts as failed on every property, and the reports say so before the failures."""
    out = []
    for v in scored["properties"].values():
        for variant, cell in v["variants"].items():
            if cell.get("verdict") == "not-declared" and variant in v["judged_variants"] and variant not in out \
                    and not cell.get("declared_limit"):
                out.append(variant)
    return out


def not_checked(scored: dict) -> dict[str, list[str]]:
    """Per property, the variants the submission's capabilities leave out (a forward-only layer's
    gradient properties, primitives not offered): each judged and not passed, 0 of its share."""
    return {p: [variant for variant, cell in v["variants"].items() if cell.get("declared_limit")]
            for p, v in scored["properties"].items()
            if any(cell.get("declared_limit") for cell in v["variants"].values())}


def signature_key(f: dict) -> str:
    """The failure's signature, the same for the same bug in any submission (numbers masked)."""
    return Signature(f["kind"], f["property"], f["case_class"], f["cause"]).key()


def student_replay(f: dict, rec: dict) -> str | None:
    """The replay command as the student runs it in their own folder (their file, not the grader's
    path); one line, each argument one shell word, whatever the file is called."""
    ex = f.get("minimal_example")
    if not ex:
        return None
    return replay_line(student_view.student_impl(rec), ex["token"], f["property"] if f["property"] != "*" else None)


def class_view(subs: list[dict]) -> list[dict]:
    """The failure signatures common across the class: per signature (inside the contract, then beyond
    it), how many submissions show it and which, most common first."""
    rows: dict = {}
    graded = [s for s in subs if s["status"] != "not-run"]
    for s in graded:
        for f in s["failures"]:
            row = rows.setdefault((f["scope"], f["signature"]), {
                "scope": f["scope"], "signature": f["signature"], "kind": f["kind"], "what": KIND_WORDS[f["kind"]],
                "property": f["property"], "cause": f["cause"], "hint": f.get("hint"), "case_class": f["case_class"],
                "submissions": []})
            if s["name"] not in row["submissions"]:
                row["submissions"].append(s["name"])
    out = sorted(rows.values(), key=lambda r: (r["scope"] != "contract", -len(r["submissions"]), r["signature"]))
    for r in out:
        r["count"], r["of"] = len(r["submissions"]), len(graded)
    return out


PLOT_WIDTH, BAR_MAX, LABEL_CHARS, LINE_PX = 1000, 400, 80, 15


def class_plot(rows: list[dict], top: int = 12) -> dict:
    """The class view's bar chart, laid out: per signature (the ``top`` most common) a bar and a label
    wrapped at word boundaries (never cut inside a word; the full text is also its tooltip)."""
    bars, y = [], 30
    for r in rows[:top]:
        label = f"{r['count']} of {r['of']}{' (beyond the contract)' if r['scope'] == 'beyond' else ''}: " \
                f"{r['cause']} [{r['property']}]"
        lines = textwrap.wrap(label, LABEL_CHARS, break_long_words=True, break_on_hyphens=False) or [""]
        if len(lines) > 3:
            lines = lines[:3]
            lines[2] = textwrap.shorten(lines[2] + " …", LABEL_CHARS, placeholder=" …")
        height = max(26, LINE_PX * len(lines) + 8)
        width = max(4, round(BAR_MAX * r["count"] / (r["of"] or 1)))
        bars.append({"signature": r["signature"], "scope": r["scope"], "y": y, "height": height, "width": width,
                     "label": label, "lines": lines})
        y += height + 8
    return {"width": PLOT_WIDTH, "height": y, "bars": bars}


def markdown(report: dict) -> str:
    """``summary.md``: every text a submission controls through :func:`md` (cells, headings, items)
    or :func:`md_code` (lines to copy), so none can end a line, add a row or run as a command."""
    run, props = report["run"], [p["name"] for p in report["properties"]]
    lines = [
        "# Grading report", "",
        md(f"tpconform {run['suite_version']} (suite sha256 {run['suite_sha256'][:12]}), torch {run['torch_version']}, "
           f"seed {run['seed']}, profile {run['profile']} ({run['examples']} examples per variant), "
           f"world sizes {run['world_sizes']}, dtypes {run['dtypes']}, sandbox: {run.get('sandbox')}."), "",
        "| submission | total | " + " | ".join(f"P{i + 1}" for i in range(len(props))) + " |",
        "|---|---:|" + "---:|" * len(props),
    ]
    for s in report["submissions"]:
        cells = [md(matrix_cell(s, p)) for p in props]
        lines.append(f"| {md(s['name'])} | **{s['total']:g}** / {s['max']:g} | " + " | ".join(cells) + " |")
    lines += ["", "Properties: " + "; ".join(f"P{i + 1} {md_code(p)} ({w['weight']:g})"
                                          for i, (p, w) in enumerate(zip(props, report["properties"])))]
    contract = run.get("contract")
    if contract:
        lines += ["", f"Contract: **{md(contract['name'])}** ({md(contract['source'])}): cases inside it are scored; "
                      "cases beyond it are checked and reported, worth no points."]
    lines += ["", "## Failures common across the class", "",
              "| submissions | scope | what | property | likely cause |", "|---:|---|---|---|---|"]
    for r in report["class_view"]:
        lines.append(f"| {r['count']} of {r['of']} | {md(r['scope'])} | {md(r['what'])} | {md(r['property'])} | "
                     f"{md(r['cause'])} |")
    lines += ["", "## Where points were lost", ""]
    for s in report["submissions"]:
        lost = [(p, v) for p, v in s["properties"].items() if v["verdict"] != "pass"]
        if not lost:
            continue
        lines.append(f"### {md(s['name'])} — {s['total']:g} / {s['max']:g}")
        if s.get("why"):
            lines.append(f"*{md(s['why'])}*")
        lines.append("")
        for p, v in lost:
            lines.append(f"- {md_code(p)}: **{md(v['verdict'])}** ({v['score']:g}/{v['max']:g}) — {md(v['reason'])}")
            for variant, cell in v["variants"].items():
                ex = cell.get("minimal_example")
                if ex and cell.get("verdict") not in ("pass", "n/a"):
                    lines.append(f"  - {md(variant)}: {md_code(ex['replay'])}")
        lines.append("")
    lines += ["## Every distinct failure", ""]
    for s in report["submissions"]:
        if not s["failures"] and not s["undeclared"] and not s.get("not_checked"):
            continue
        lines.append(f"### {md(s['name'])}")
        if s["undeclared"]:
            lines.append(f"- required variants not declared (every property counts as failed on them): "
                         f"{md(', '.join(s['undeclared']))}")
        if s.get("not_checked"):
            lines.append(f"- not checked, as its capabilities declare (0 of their points, kept in the maximum): "
                         f"{md(', '.join(s['not_checked']))}")
        for f in s["failures"]:
            where = "beyond the contract (no points)" if f["scope"] == "beyond" else "in the contract"
            lines.append(f"- **{md(f['id'])}** {md(f['variant'])}, {where}: {KIND_WORDS[f['kind']]} — {md(f['cause'])} "
                         f"({f['examples']} example(s); costs: {md(', '.join(f['properties']))})")
            if f.get("student_replay"):
                lines.append(f"  - replay: {md_code(f['student_replay'])}")
        lines.append("")
    lines += ["## Suspicious code (for review)", "",
              "Lines that reach into the grading harness or the process. Not a verdict: scores do not depend "
              "on them.", ""]
    for s in report["submissions"]:
        if s.get("suspicious"):
            lines.append(f"### {md(s['name'])}")
            for h in s["suspicious"]:
                where = f"{h['file']}:{h['line']}"
                lines.append(f"- {md_code(where)} {md(h['why'])}: {md_code(h['code'])}")
            lines.append("")
    return "\n".join(lines) + "\n"


def matrix_cell(s: dict, prop: str) -> str:
    """What the matrix shows for ``prop`` of ``s``: its points and verdict, the load problem of a
    submission that could not be graded, or "no points" for a property worth nothing."""
    v = s["properties"][prop]
    if v["verdict"] == "error" and s.get("load_problem"):
        return s["load_problem"]["label"]
    if not v["max"]:
        return f"{v['verdict']}, no points"
    return f"{v['score']:g} {v['verdict']}"


_ENV = jinja2.Environment(loader=jinja2.PackageLoader("tpconform.grading", "templates"),
                          autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined)
# a name with a newline or a right-to-left override shows them as escapes (\n, \u202e), not as a line break
_ENV.filters["visible"] = visible


def html(report: dict) -> str:
    return _ENV.get_template("report.html.j2").render(report=report, colours=COLOURS, bars=BAR_COLOURS,
                                                      kinds=KIND_WORDS, plot=class_plot(report["class_view"]))


def student_html(report: dict, sub: dict) -> str:
    """The page a student reads (``sub`` their student view): their score, the contract, each distinct
    failure with its minimal example and how to replay it locally."""
    return _ENV.get_template("student.html.j2").render(report=report, s=sub, colours=COLOURS, kinds=KIND_WORDS)


def _write(path: str, text: str) -> None:
    """``text`` at ``path``, whole or not at all; a lone surrogate (bytes that were not UTF-8) as an escape."""
    with open(path + ".tmp", "w", encoding="utf-8", errors="backslashreplace") as fh:
        fh.write(text)
    os.replace(path + ".tmp", path)


def write_all(out: str, run: dict, records: list[dict], weights, *, gradescope_files: bool = False) -> dict:
    report = build(run, records, weights)
    paths = {"json": os.path.join(out, "report.json"), "markdown": os.path.join(out, "summary.md"),
             "html": os.path.join(out, "index.html")}
    write_atomic(paths["json"], report)
    _write(paths["markdown"], markdown(report))
    _write(paths["html"], html(report))
    os.makedirs(os.path.join(out, STUDENTS_DIR), exist_ok=True)
    for sub in report["submissions"]:
        seen_by_student = student_view.view(sub)
        _write(os.path.join(out, sub["page"]), student_html(report, seen_by_student))
        if gradescope_files:
            folder = os.path.join(out, "gradescope", sub["key"])
            os.makedirs(folder, exist_ok=True)
            _write(os.path.join(folder, "results.json"), json.dumps(gradescope_results.results(seen_by_student), indent=1))
    return paths
