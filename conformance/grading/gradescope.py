"""One submission's ``results.json`` in the format Gradescope's autograder reads, from its student
view (:mod:`tpconform.grading.student_view`: no path of the grader's machine).

A test per property that applies to the submission, named by the property's exact name (what
``--property=`` and docs/GRADING.md call it) and tagged with its family; a property that does not
apply (another family the submission does not offer, no variant to judge) is no test — it is listed
in the top-level output instead of showing as failed. Every text is plain text (``output_format``),
so nothing a submission printed is rendered as Markdown or HTML.
"""

from __future__ import annotations

from collections import Counter

from tpconform.grading.catalog import FAMILY_OF, PRIMARY

KIND_WORDS = {"property": "wrong result", "raised": "the layer raised", "shape": "wrong output shape",
              "crash": "a rank died", "hang": "a hang"}


def results(sub: dict) -> dict:
    """``sub`` (a student view of one submission of the report) as Gradescope's ``results.json``."""
    tests, not_applicable = [], []
    for p, v in sub["properties"].items():
        if v["verdict"] == "n/a" and not v["max"]:
            not_applicable.append(p)
            continue
        out = v["reason"] or "passed on every variant"
        failures = [c.get("failure") for c in v["variants"].values() if c.get("failure")]
        if failures:
            out += "\n\n" + failures[0]
        tests.append({"name": p, "score": v["score"], "max_score": v["max"], "tags": [FAMILY_OF.get(p, PRIMARY)],
                      "status": "passed" if v["verdict"] == "pass" else "failed", "output": out,
                      "output_format": "text"})
    output = sub.get("why") or f"{sub['total']:g} / {sub['max']:g}"
    for f in sub.get("failures", []):
        where = " (beyond the contract, no points)" if f["scope"] == "beyond" else ""
        output += f"\n\n{f['id']}{where}: {KIND_WORDS[f['kind']]}: {f['cause']}"
        if f.get("student_replay"):
            output += f"\nreplay: {f['student_replay']}"
    if not_applicable:
        families = Counter(FAMILY_OF.get(p, PRIMARY) for p in not_applicable)
        output += ("\n\nNot applicable to this submission (no tests, no points): the properties of "
                   + ", ".join(f"{family} ({n})" for family, n in families.items()) + ": "
                   + ", ".join(not_applicable))
    return {"score": sub["total"], "output": output, "output_format": "text", "test_output_format": "text",
            "tests": tests}
