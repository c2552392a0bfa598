"""Scores from cell results: a weight per property, partial credit per variant, a total.

A property's score is ``weight × passed / judged`` over the variants it is judged on: those the
submission declares (where the property applies), plus the required variants of the weights file,
which count as failed when not declared. A hang, a crash, or a time-out on a variant costs that
variant (it is judged and not passed), never the variants that ran to the end; a submission that
could not be loaded, or changed the suite's files, scores 0 everywhere. Verdicts and the rules are
documented in docs/GRADING.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from tpconform.grading import catalog  # plain data: scoring never imports the families (nor torch)
from tpconform.spec.options import OptionError, read_toml

DEFAULT_WEIGHTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights.toml")
# every verdict a property (or a cell) can have; the report colours them
VERDICTS = ("pass", "partial", "fail", "not-declared", "crash", "hang", "timeout", "cheat", "error", "n/a")
ZEROING = ("crash", "hang", "timeout")  # a variant that did not run to the end: it scores 0 (the others keep theirs)


class WeightsError(Exception):
    """A weights file that cannot be used; the message is one line for the user."""


@dataclass(frozen=True)
class Weights:
    points: dict
    required: tuple
    source: str
    self_reported: tuple = ()  # properties whose facts the candidate's own process measures: no points
    family_points: dict = field(default_factory=dict)  # the other families' properties
    families: tuple = ()  # the families scored without a contract (the primary one always) (with one: the contract's ``families``)

    @property
    def total(self) -> float:
        """The primary family's points (the single layer's: the maximum when only it is scored)."""
        return float(sum(self.points.values()))

    def scored(self, contract: dict | None = None) -> tuple:
        """The families whose points make up every submission's maximum: the contract's ``families``,
        else ``[families] scored``; the primary family (the single layer) always."""
        names = (contract or {}).get("families") if contract else self.families
        return tuple(dict.fromkeys((catalog.PRIMARY, *(names or ()))))

    def maximum(self, contract: dict | None = None) -> float:
        """The most a submission can score: fixed by the grader, whatever a submission offers."""
        scored = self.scored(contract)
        return round(self.total + sum(w for p, w in self.family_points.items() if catalog.FAMILY_OF[p] in scored), 2)

    def as_dict(self) -> dict:
        return {"points": dict(self.points), "required_variants": list(self.required), "source": self.source,
                "self_reported": list(self.self_reported), "family_points": dict(self.family_points),
                "families": list(self.families)}


def _read(path: str) -> dict:
    try:
        return read_toml(path, f"--weights={path}")
    except OptionError as exc:
        raise WeightsError(str(exc)) from None


def load_weights(path: str | None = None) -> Weights:
    """The default weights, overridden by ``path`` (a TOML file like ``weights.toml``)."""
    base = _read(DEFAULT_WEIGHTS)
    points = dict(base["weights"])
    default = base["default_weight"]
    required = list(base["variants"]["required"])
    self_reported = list(base.get("self_reported", {}).get("properties", []))
    scored = list(base.get("families", {}).get("scored", [catalog.PRIMARY]))
    if path:
        user = _read(path)
        unknown = set(user) - {"weights", "variants", "default_weight", "self_reported", "families"}
        default = user.get("default_weight", default)
        unknown_props = set(user.get("weights", {})) - set(catalog.ALL_PROPERTIES)
        if unknown or unknown_props:
            raise WeightsError(f"--weights={path}: unknown {'keys' if unknown else 'properties'} "
                               f"{sorted(unknown or unknown_props)}; properties are {', '.join(catalog.catalog().primary_properties)}")
        for k, v in user.get("weights", {}).items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise WeightsError(f"--weights={path}: {k} = {v!r}: a weight is a number >= 0")
            points[k] = v
        required = user.get("variants", {}).get("required", required)
        bad = [v for v in required if v not in catalog.PRIMARY_VARIANTS] if isinstance(required, list) else [required]
        if bad:
            raise WeightsError(f"--weights={path}: unknown required variant(s) {bad}; "
                               f"variants are {', '.join(catalog.PRIMARY_VARIANTS)}")
        self_reported = user.get("self_reported", {}).get("properties", self_reported)
        if not isinstance(self_reported, list) or set(self_reported) - set(catalog.ALL_PROPERTIES):
            raise WeightsError(f"--weights={path}: [self_reported] properties must be a list of properties")
        scored = user.get("families", {}).get("scored", scored)
        if not isinstance(scored, list) or set(scored) - set(catalog.catalog().families):
            raise WeightsError(f"--weights={path}: [families] scored must be a list of families from "
                               f"{', '.join(sorted(catalog.catalog().families))}")
    # a fact the candidate's process reports about itself can be forged from inside it: shown, never scored.
    # Which facts those are is each property's own declaration (spec.family.Property.self_reported); a
    # weights file may add to them, never take one away.
    self_reported = list(dict.fromkeys([*catalog.SELF_REPORTED, *self_reported]))
    weight = {p: 0.0 if p in self_reported else float(points.get(p, default)) for p in catalog.ALL_PROPERTIES}
    return Weights({p: w for p, w in weight.items() if catalog.FAMILY_OF[p] == catalog.PRIMARY}, tuple(required), path or "default",
                   tuple(self_reported), {p: w for p, w in weight.items() if catalog.FAMILY_OF[p] != catalog.PRIMARY},
                   tuple(dict.fromkeys([catalog.PRIMARY, *scored])))


_UNMEASURED = "not measured: graded without the sandbox (--unsandboxed), where it cannot be measured; no points"


def _lost(verdict: str, reason: str, weights: Weights, contract: dict | None = None, *, sandboxed: bool = True) -> dict:
    """Every property lost alike (a submission that never ran, tampered, or went over its budget). Unsandboxed,
    the checks measured outside the candidate are out of the maximum, as for every submission of such a run (one
    maximum for the class)."""
    scored = weights.scored(contract)
    outside = () if sandboxed else catalog.catalog().measured_outside
    props: dict[str, dict] = {p: {"verdict": verdict, "score": 0.0, "max": w, "reason": reason, "passed_variants": [],
                                  "judged_variants": [], "variants": {}} for p, w in weights.points.items()}
    for p in outside:
        if p in props:
            props[p].update(verdict="n/a", max=0.0, reason=_UNMEASURED)
    props.update({p: {"verdict": verdict if catalog.FAMILY_OF[p] in scored else "n/a", "score": 0.0,
                      "max": w if catalog.FAMILY_OF[p] in scored else 0.0, "reason": reason, "passed_variants": [],
                      "judged_variants": [], "variants": {}} for p, w in weights.family_points.items()})
    unmeasured = sum(weights.points.get(p, 0.0) for p in outside)
    return {"total": 0.0, "max": round(weights.maximum(contract) - unmeasured, 2), "why": reason, "properties": props,
            "beyond": {}, "failures": []}


def score_submission(result: dict, weights: Weights, contract: dict | None = None, *, sandboxed: bool = True) -> dict:
    """Scores for one submission's result (see :func:`tpconform.grading.isolation.run_isolated`).

    With a ``contract`` (``Contract.as_dict``), its variants are the required ones and only cells of
    the scope ``contract`` count; cells ``beyond`` it are summarised per property, worth nothing.
    ``sandboxed``: whether the run graded in the sandbox (without it, the checks measured outside the
    candidate cannot be measured for anyone: out of every submission's maximum, loaded or not)."""
    from tpconform.grading.records import Invalid, stored_result

    try:
        result = stored_result(result)
    except Invalid as exc:
        return _lost("error", f"its stored result is malformed ({exc}): grade it again", weights, contract, sandboxed=sandboxed)
    if result.get("problem"):
        return _lost("error", f"not graded: {result['problem']}", weights, contract, sandboxed=sandboxed)
    if result.get("tampered"):
        return _lost("cheat", "it changed the suite's files: " + ", ".join(result["tampered"][:5]), weights, contract, sandboxed=sandboxed)
    if result.get("over_budget"):  # the whole sandbox's memory: nothing a correct layer comes near
        return _lost("crash", result["over_budget"], weights, contract, sandboxed=sandboxed)
    if result.get("unusable"):
        return _lost("error", f"it could not be loaded: {result['unusable']}", weights, contract, sandboxed=sandboxed)
    missing_verdict, missing_reason = {
        "timeout": ("timeout", "the submission ran past its time limit before this was checked"),
        "crashed": ("crash", (f"the grading process died (exit code {result.get('exit_code')}) before this was "
                              "checked")),
    }.get(result.get("status"), ("crash", "no result came back for this"))
    if result.get("status") != "done" and result.get("describe") is None:
        return _lost(missing_verdict, missing_reason.replace("before this was checked", "while loading it"), weights, contract, sandboxed=sandboxed)
    cells = {(c["property"], c["variant"]): c for c in result.get("cells", []) if c.get("scope") != "beyond"}
    required = tuple(contract["variants"]) if contract else weights.required
    scored = weights.scored(contract)
    props: dict[str, dict] = {}
    unmeasured = 0.0  # the points of checks this run could not measure: out of the maximum too
    outside = () if sandboxed else catalog.catalog().measured_outside
    for prop, weight in {**weights.points, **weights.family_points}.items():
        judged, passed, variants, worst = [], [], {}, None
        if prop in outside:  # unsandboxed: measured for no submission, whatever its cells say (one maximum)
            unmeasured += weight
            props[prop] = {"verdict": "n/a", "score": 0.0, "max": 0.0, "reason": _UNMEASURED, "passed_variants": [],
                           "judged_variants": [], "variants": {}}
            continue
        family = catalog.FAMILY_OF[prop]
        if family not in scored:
            weight = 0.0  # graded and shown, worth nothing: not a family this grade scores
        for variant in catalog.VARIANTS_OF[prop]:
            cell = cells.get((prop, variant))
            if cell is None and variant not in catalog.PRIMARY_VARIANTS and (family == catalog.PRIMARY or family not in scored):
                continue  # another family's variant (sub-groups'), or a family not scored: not graded in this run
            if family != catalog.PRIMARY and family in scored and (cell is None or cell["verdict"] in ("n/a", "not-declared")):
                # a scored family's variant the submission does not offer (or the run never reached)
                # costs its share: the maximum is the grader's, never shrunk by what is offered
                limit = {"declared_limit": True} if cell is not None and cell["verdict"] == "not-declared" else {}
                cell = {**(cell or {}), "verdict": "not-declared", **limit,  # limit: left out by its capabilities
                        "reason": f"a scored family, not offered: {(cell or {}).get('reason') or missing_reason}"}
                variants[variant] = cell
                judged.append(variant)
                worst = worst or ("not-declared", f"{variant}: {cell['reason']}")
                continue
            if cell is None and variant not in required and (contract or not _judged(prop, variant, result["describe"])):
                continue  # never reached, and it would not have been judged (not declared, n/a, not in the contract)
            cell = cell or {"verdict": missing_verdict, "reason": missing_reason}
            verdict = cell["verdict"]
            if verdict == "not-declared" and variant in catalog.PRIMARY_VARIANTS and _judged(prop, variant, result["describe"]):
                # a declared variant, a property its capabilities leave out (forward-only: the grads): 0 points
                cell = {**cell, "declared_limit": True}
            elif verdict == "not-declared" and variant in required:
                cell = {**cell, "reason": f"a required variant, not declared: {cell.get('reason')}"}
            elif verdict in ("not-declared", "n/a"):
                variants[variant] = cell
                continue
            variants[variant] = cell
            judged.append(variant)
            if verdict == "pass":
                passed.append(variant)
            elif worst is None or (verdict in ZEROING and worst[0] not in ZEROING):
                worst = (verdict, f"{variant}: {cell.get('reason')}")
        if not judged:
            verdict, score = "n/a", 0.0
            if prop in catalog.catalog().measured_outside:
                # a check this run could not measure (unsandboxed: no private loopback): no points either way
                unmeasured += weight
                weight = 0.0
        else:
            # a crash, hang or time-out costs its own variant only: the variants that ran keep their points
            score = round(weight * len(passed) / len(judged), 2)
            verdict = "pass" if len(passed) == len(judged) else "partial" if passed else (
                worst[0] if worst and worst[0] in ZEROING else
                "not-declared" if worst and worst[0] == "not-declared" and all(
                    variants[v]["verdict"] == "not-declared" for v in judged) else "fail")
        reason = None if verdict == "pass" else (worst[1] if worst else "no variant applies")
        if prop in weights.self_reported:
            reason = (reason + "; " if reason else "") + ("self-reported: measured inside the candidate's own "
                                                          "process, which can forge it; no points")
        elif family not in scored and judged:
            reason = (reason + "; " if reason else "") + (f"the {family} family is not scored in this grade "
                                                          "(the contract's families, or [families] scored): no points")
        props[prop] = {"verdict": verdict, "score": score, "max": weight, "reason": reason,
                       "passed_variants": passed, "judged_variants": judged, "variants": variants}
    total = round(sum(p["score"] for p in props.values()), 2)
    # why points were lost to a variant that did not run to the end (the first such property's reason)
    stopped = [p for p in props.values() if any(c.get("verdict") in ZEROING for c in p["variants"].values())]
    why = stopped[0]["reason"] if stopped else None
    return {"total": total, "max": round(weights.maximum(contract) - unmeasured, 2), "why": why, "properties": props,
            "beyond": beyond_summary(result.get("cells", [])), "failures": result.get("failures", [])}


def _judged(prop: str, variant: str, describe) -> bool:
    """Would ``prop`` be judged on the linear ``variant`` of a submission that describes itself as
    ``describe`` (declared, and the property applies)? For the cells a run never reached."""
    caps = (describe or {}).get("capabilities") or {}
    if variant == "column-sharded-output" and prop == "ranks_agree_on_the_output":
        return False  # a sharded output is not replicated: nothing to agree on
    kind, option = {"column-gathered": ("column_gather_output", True),
                    "column-sharded-output": ("column_gather_output", False),
                    "row-full-input": ("row_input_is_parallel", False),
                    "row-sliced-input": ("row_input_is_parallel", True)}[variant]
    return option in (caps.get(kind) or ())


def beyond_summary(cells: list) -> dict:
    """Per property, how it fared on the cases beyond the contract (no points): ``pass`` when every
    variant checked there passed, else the worst verdict; properties not checked there are left out."""
    out: dict = {}
    rank = {"pass": 0, "fail": 1, "crash": 2, "hang": 2, "timeout": 2}
    for c in cells:
        if c.get("scope") != "beyond" or c["verdict"] not in rank:
            continue
        entry = out.setdefault(c["property"], {"verdict": "pass", "examples": 0, "failures": []})
        entry["examples"] += c.get("examples", 0)
        if rank[c["verdict"]] > rank[entry["verdict"]]:
            entry["verdict"] = c["verdict"]
        entry["failures"] += [f for f in c.get("failures", []) if f not in entry["failures"]]
    return out


def __getattr__(name: str):
    """``VARIANT_NAMES``: the linear layers' variant names (from the catalog, on first use)."""
    if name == "VARIANT_NAMES":
        return catalog.PRIMARY_VARIANTS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
