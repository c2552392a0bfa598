"""The reports of a grading run: ``report.json`` (schema in docs/GRADING.md), ``summary.md``,
``index.html`` (the submission × property matrix) and, optionally, Gradescope ``results.json`` files."""

from __future__ import annotations

import json
import os
import re

import jinja2
from tpconform.grading.failures import Signature
from tpconform.grading.records import write_atomic
from tpconform.grading.scoring import VARIANT_NAMES, VERDICTS, score_submission

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
KIND_WORDS = {"property": "wrong result", "raised": "the layer raised", "shape": "wrong output shape",
              "crash": "a rank died", "hang": "a hang"}


def build(run: dict, records: list[dict], weights) -> dict:
    """The JSON report: the run, then per submission, per property, per variant."""
    subs = []
    for i, rec in enumerate(records):
        result = rec.get("result", {})
        scored = score_submission(result, weights, run.get("contract"))
        for f in scored["failures"]:
            f["signature"] = signature_key(f)
            f["student_replay"] = student_replay(f, rec)
        subs.append({
            "page": f"{STUDENTS_DIR}/{i + 1:03d}-{re.sub(r'[^A-Za-z0-9._-]', '_', rec['name'])[:80]}.html",
            "name": rec["name"], "path": rec["path"], "kind": rec["kind"], "impl": rec.get("impl") or None,
            "sha256": rec.get("sha256"), "status": result.get("status", "not-run"),
            "seconds": result.get("seconds"), "declared": result.get("describe"), **scored,
            "undeclared": undeclared(scored), "coverage": coverage(scored),
            "log_tail": result.get("log_tail", ""), "sandbox": result.get("sandbox"),
            "narrowed": result.get("narrowed"), "suspicious": result.get("suspicious", []),
        })
    return {"schema": SCHEMA, "run": run,
            # the matrix: the linear layers' properties; another family's show in a submission's own
            # section (and its total) where it offers that family
            "properties": [{"name": p, "weight": w} for p, w in weights.points.items()],
            "family_properties": [{"name": p, "weight": w} for p, w in weights.family_points.items()
                                  if any(s["properties"][p]["max"] > 0 for s in subs)],
            "variants": list(VARIANT_NAMES), "submissions": subs, "class_view": class_view(subs)}


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
            if cell.get("verdict") == "not-declared" and variant in v["judged_variants"] and variant not in out:
                out.append(variant)
    return out


def signature_key(f: dict) -> str:
    """The failure's signature, the same for the same bug in any submission (numbers masked)."""
    return Signature(f["kind"], f["property"], f["case_class"], f["cause"]).key()


def student_replay(f: dict, rec: dict) -> str | None:
    """The replay command as the student runs it in their own folder (their file, not the grader's path)."""
    ex = f.get("minimal_example")
    if not ex:
        return None
    impl = rec.get("impl") or os.path.basename(rec.get("path", ""))
    prop = f" --property={f['property']}" if f["property"] != "*" else ""
    return f"python -m tpconform replay --impl={impl} '{ex['token']}'{prop}"


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


def markdown(report: dict) -> str:
    run, props = report["run"], [p["name"] for p in report["properties"]]
    lines = [
        "# Grading report", "",
        (f"tpconform {run['suite_version']} (suite sha256 {run['suite_sha256'][:12]}), torch {run['torch_version']}, "
         f"seed {run['seed']}, profile {run['profile']} ({run['examples']} examples per variant), "
         f"world sizes {run['world_sizes']}, dtypes {run['dtypes']}, sandbox: {run.get('sandbox')}."), "",
        "| submission | total | " + " | ".join(f"P{i + 1}" for i in range(len(props))) + " |",
        "|---|---:|" + "---:|" * len(props),
    ]
    for s in report["submissions"]:
        cells = [f"{s['properties'][p]['score']:g} {s['properties'][p]['verdict']}" for p in props]
        lines.append(f"| {s['name']} | **{s['total']:g}** / {s['max']:g} | " + " | ".join(cells) + " |")
    lines += ["", "Properties: " + "; ".join(f"P{i + 1} `{p}` ({w['weight']:g})"
                                          for i, (p, w) in enumerate(zip(props, report["properties"])))]
    contract = run.get("contract")
    if contract:
        lines += ["", f"Contract: **{contract['name']}** ({contract['source']}): cases inside it are scored; cases "
                      "beyond it are checked and reported, worth no points."]
    lines += ["", "## Failures common across the class", "",
              "| submissions | scope | what | property | likely cause |", "|---:|---|---|---|---|"]
    for r in report["class_view"]:
        lines.append(f"| {r['count']} of {r['of']} | {r['scope']} | {r['what']} | {r['property']} | {r['cause']} |")
    lines += ["", "## Where points were lost", ""]
    for s in report["submissions"]:
        lost = [(p, v) for p, v in s["properties"].items() if v["verdict"] != "pass"]
        if not lost:
            continue
        lines.append(f"### {s['name']} — {s['total']:g} / {s['max']:g}")
        if s.get("why"):
            lines.append(f"*{s['why']}*")
        lines.append("")
        for p, v in lost:
            lines.append(f"- `{p}`: **{v['verdict']}** ({v['score']:g}/{v['max']:g}) — {v['reason']}")
            for variant, cell in v["variants"].items():
                ex = cell.get("minimal_example")
                if ex and cell.get("verdict") not in ("pass", "n/a"):
                    lines.append(f"  - {variant}: `{ex['replay']}`")
        lines.append("")
    lines += ["## Every distinct failure", ""]
    for s in report["submissions"]:
        if not s["failures"] and not s["undeclared"]:
            continue
        lines.append(f"### {s['name']}")
        if s["undeclared"]:
            lines.append(f"- required variants not declared (every property counts as failed on them): "
                         f"{', '.join(s['undeclared'])}")
        for f in s["failures"]:
            where = "beyond the contract (no points)" if f["scope"] == "beyond" else "in the contract"
            lines.append(f"- **{f['id']}** {f['variant']}, {where}: {KIND_WORDS[f['kind']]} — {f['cause']} "
                         f"({f['examples']} example(s); costs: {', '.join(f['properties'])})")
            if f.get("student_replay"):
                lines.append(f"  - replay: `{f['student_replay']}`")
        lines.append("")
    lines += ["## Suspicious code (for review)", "",
              "Lines that reach into the grading harness or the process. Not a verdict: scores do not depend "
              "on them.", ""]
    for s in report["submissions"]:
        if s.get("suspicious"):
            lines.append(f"### {s['name']}")
            for h in s["suspicious"]:
                code = h["code"].replace("`", "'")
                lines.append(f"- `{h['file']}:{h['line']}` {h['why']}: `{code}`")
            lines.append("")
    return "\n".join(lines) + "\n"


_ENV = jinja2.Environment(loader=jinja2.PackageLoader("tpconform.grading", "templates"),
                          autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined)


def html(report: dict) -> str:
    return _ENV.get_template("report.html.j2").render(report=report, colours=COLOURS, bars=BAR_COLOURS,
                                                      kinds=KIND_WORDS)


def student_html(report: dict, sub: dict) -> str:
    """The page a student reads: their score, the contract, each distinct failure with its minimal
    example and how to replay it locally."""
    return _ENV.get_template("student.html.j2").render(report=report, s=sub, colours=COLOURS, kinds=KIND_WORDS)


def gradescope(sub: dict) -> dict:
    """One submission in the ``results.json`` format Gradescope's autograder reads."""
    tests = []
    for p, v in sub["properties"].items():
        out = v["reason"] or "passed on every variant"
        failures = [c.get("failure") for c in v["variants"].values() if c.get("failure")]
        if failures:
            out += "\n\n" + failures[0]
        tests.append({"name": p.replace("_", " "), "score": v["score"], "max_score": v["max"],
                      "status": "passed" if v["verdict"] == "pass" else "failed", "output": out})
    output = sub.get("why") or f"{sub['total']:g} / {sub['max']:g}"
    for f in sub.get("failures", []):
        where = " (beyond the contract, no points)" if f["scope"] == "beyond" else ""
        output += f"\n\n{f['id']}{where}: {KIND_WORDS[f['kind']]}: {f['cause']}"
        if f.get("student_replay"):
            output += f"\nreplay: {f['student_replay']}"
    return {"score": sub["total"], "output": output, "tests": tests}


def write_all(out: str, run: dict, records: list[dict], weights, *, gradescope_files: bool = False) -> dict:
    report = build(run, records, weights)
    paths = {"json": os.path.join(out, "report.json"), "markdown": os.path.join(out, "summary.md"),
             "html": os.path.join(out, "index.html")}
    write_atomic(paths["json"], report)
    for key, text in (("markdown", markdown(report)), ("html", html(report))):
        with open(paths[key] + ".tmp", "w") as fh:
            fh.write(text)
        os.replace(paths[key] + ".tmp", paths[key])
    os.makedirs(os.path.join(out, STUDENTS_DIR), exist_ok=True)
    for sub in report["submissions"]:
        page = os.path.join(out, sub["page"])
        with open(page + ".tmp", "w") as fh:
            fh.write(student_html(report, sub))
        os.replace(page + ".tmp", page)
    if gradescope_files:
        for sub in report["submissions"]:
            folder = os.path.join(out, "gradescope", sub["name"])
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, "results.json"), "w") as fh:
                json.dump(gradescope(sub), fh, indent=1)
    return paths
