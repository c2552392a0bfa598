"""Every distinct failure of a submission, not only the first: failed examples grouped by signature.

A signature is what a teacher would call "the same bug": the kind of failure, the property (``*``
when the example could not be judged at all), the case class (:func:`case_class`) and the likely
cause (the family's, ``Family.likely_cause``; the failed quantity when no cause is recognised). The
same for every family; three kinds of failure are reported once each, however many properties they stopped:

- ``raised``: the layer raised (at construction or in a call; the signature names the exception,
  the likely cause is shown beside it); every property of that example is unjudged, and the group
  lists them;
- ``shape``: the output has the wrong shape; the properties that read the output or back-propagate
  through it (the suite then back-propagates zeros of the output's shape) are listed under it;
- ``property``: a property violated on an example that ran.

Hangs and dead ranks end a variant; the grader reports them as one ``crash``/``hang`` group.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Optional

from tpconform.families.linear.verdict import SPEC, Evidence
from tpconform.grading.signature import Signature  # noqa: F401 - Signature: imported from here
from tpconform.spec.family import Family
from tpconform.spec.violations import Violation

SHAPE_PROPERTY = "output_shape_and_dtype_match_nn_linear"
# properties that read the output or back-propagate through it: unjudged when its shape is wrong
SHAPE_DEPENDENT = ("output_matches_the_dense_layer", "ranks_agree_on_the_output", "input_grad_matches_the_dense_layer",
                   "weight_grad_matches_the_dense_layer", "bias_grad_matches_the_dense_layer",
                   "repeated_calls_are_independent", "training_step_matches_the_dense_layer")
# properties that repeat the forward (a second call, a call after a training step): a wrong output
# fails them too, and is reported once, under the output's failure, when they show no cause of their own
REPEAT_THE_OUTPUT = ("repeated_calls_are_independent", "training_step_matches_the_dense_layer")
# the quantity a repeat checks -> the property that checks it the first time
REPEATS = {"second output": "output_matches_the_dense_layer", "output after the step": "output_matches_the_dense_layer",
           "input grad after the step": "input_grad_matches_the_dense_layer",
           "weight grad after the step": "weight_grad_matches_the_dense_layer",
           "bias grad after the step": "bias_grad_matches_the_dense_layer"}
REPEATED = tuple(dict.fromkeys(REPEATS.values()))
GRAD_PROPERTIES = ("input_grad_matches_the_dense_layer", "weight_grad_matches_the_dense_layer",
                   "bias_grad_matches_the_dense_layer")
MAX_GROUPS = 12  # per variant and scope; more are counted, not shrunk or reported


def case_class(case) -> str:
    """The class of a case that decides what a failure means: dims divisible by the world size or not
    (a case that does not say: one class)."""
    uneven = getattr(case, "uneven", None)
    return "any case" if uneven is None else "uneven dims" if uneven else "divisible dims"


def full_batch(case) -> bool:
    """Whether ``case``'s batch is not empty (a case without a batch shape: it is not)."""
    return math.prod(getattr(case, "batch_shape", (1,))) > 0


def exception_line(text: str) -> str:
    """The line of a candidate's error that names it (``ValueError: ...``); :meth:`Signature.key`
    masks its numbers, so the same error on different shapes is one signature."""
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    named = [m.group(1) for m in map(_NAMED.search, lines) if m]  # also after "rank 1 raised: " or "ranks 0-1: "
    return (named or lines or ["(no message)"])[-1][:200]


_NAMED = re.compile(r"(?:^|: )([A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit)\b.*)")


def _raised_cause(found: list[Violation]) -> str:
    """What the layer raised, as the signature names it (the exception, not a guess at why: the same
    exception on an empty batch and on a full one is one failure; :func:`raised_hint` guesses why)."""
    v = found[0]
    where = "at construction" if v.quantity == "construction" else "in a call"
    if v.quantity == "construction" and "some ranks only" in v.message:
        where = "at construction, on some ranks only"
    return f"raised {where}: {exception_line(v.message)}"


def raised_hint(fam: Family, ev, found: list[Violation], on_a_full_batch: bool) -> Optional[str]:
    """The likely cause of a raise (``fam.likely_cause``), shown beside it; not "the batch is empty" when
    the same exception was raised on a non-empty batch too."""
    if on_a_full_batch and not full_batch(ev.case):
        return None
    return fam.cause_of(ev, found[0])


def _shape_error(ev) -> Optional[str]:
    """Why the output's shape is wrong on some rank (the first), or ``None`` (also for a family whose
    ranks never replace the upstream grad)."""
    for r, res in enumerate(getattr(ev, "ranks", None) or ()):
        replaced = getattr(res, "upstream_grad_replaced", None)
        if replaced:
            return f"rank {r}: {replaced}"
    return None


def shape_cause(fam: Family, ev: Evidence) -> str:
    """Why the output's shape is wrong, one line: the likely cause of the shape property's first
    violation, or that violation itself."""
    shape = SPEC[SHAPE_PROPERTY](ev)
    cause = next((fam.cause_of(ev, v) for v in shape if v.quantity == "output"), None)
    return cause or (shape[0].message if shape else "the output has the wrong shape")


def upstream_grad_note(ev) -> str:
    """What upstream grad the backward of this example was given (gradient failures say it); ``""`` for
    evidence that is not one layer's (another family's whose properties share the single layer's names:
    the layer split into TP sub-groups)."""
    if not isinstance(ev, Evidence):
        return ""
    replaced = _shape_error(ev)
    if replaced:
        return (f"upstream grad used: zeros of the output's shape, not the case's upstream grad ({replaced}), so the "
                "ranks' backward collectives stay matched; the grads are not judged until the shape is right")
    return (f"upstream grad used: the case's random normal upstream grad (seed {ev.case.seed}, shape "
            f"{[*ev.case.batch_shape, ev.case.out_features]}"
            + (", each rank its slice)" if ev.output_is_sharded else ")"))


def signatures(fam: Family, ev, prop: str, found: list[Violation]) -> list[tuple[Signature, list[Violation]]]:
    """The signature(s) of ``fam``'s ``prop``'s violations ``found`` on one example, one per distinct cause,
    each with the violations it covers (a raised or wrong-shape example: one signature covering them all).
    Each violation's cause is worked out once (a do-nothing layer's example has hundreds)."""
    cls = case_class(ev.case)
    if found[0].quantity in ("run", "construction"):
        return [(Signature("raised", "*", cls, _raised_cause(found)), list(found))]
    if prop in SHAPE_DEPENDENT + (SHAPE_PROPERTY,) and _shape_error(ev):
        return [(Signature("shape", "*", cls, shape_cause(fam, ev)), list(found))]
    out: dict[str, tuple[Signature, list[Violation]]] = {}
    for v in found:
        cause = fam.cause_of(ev, v) or unexplained(v)
        out.setdefault(cause, (Signature("property", prop, cls, cause), []))[1].append(v)
    return list(out.values())


def unexplained(v: Violation) -> str:
    """The cause a violation's signature gets when no likely cause is recognised."""
    return f"{v.quantity or 'result'} wrong"


def merge_repeats(sigs: dict[str, tuple[Signature, list, list]]) -> dict[str, tuple[Signature, list, list]]:
    """Fold the failures of :data:`REPEAT_THE_OUTPUT` that have no cause of their own into the failure
    of the property they repeat on the same example (a wrong output makes the second call and the
    output after a training step wrong too; a wrong input grad, the input grad after the step): one
    bug, listed once, with every property it costs."""
    base: dict[str, list] = {}
    for sig, props, _ in sigs.values():
        if sig.kind == "property" and sig.property in REPEATED:
            base.setdefault(sig.property, props)
    if not base:
        return sigs
    out = {}
    for key, (sig, props, found) in sigs.items():
        target = REPEATS.get(found[0].quantity) if found and sig.kind == "property" else None
        if sig.property in REPEAT_THE_OUTPUT and target in base and sig.cause == unexplained(found[0]):
            for p in props:
                if p not in base[target]:
                    base[target].append(p)
            continue
        out[key] = (sig, props, found)
    return out


@dataclass
class Group:
    """One distinct failure: its signature, the first example that showed it, and what it stopped."""

    id: str
    signature: Signature
    scope: str
    variant: str
    first_case: object
    properties: list[str] = field(default_factory=list)
    examples: int = 0
    on_a_full_batch: bool = False  # seen on a non-empty batch too (then an empty batch is not its cause)

    def note(self, prop: str) -> None:
        if prop not in self.properties:
            self.properties.append(prop)


class Groups:
    """The groups of one variant in one scope, in the order they were first seen."""

    def __init__(self, scope: str, variant: str, prefix: str):
        self.scope, self.variant, self.prefix = scope, variant, prefix
        self.by_key: dict[str, Group] = {}
        self.overflow: set[str] = set()  # properties that failed in a group past MAX_GROUPS (not listed)

    def add(self, sig: Signature, case, prop: str, counted: set) -> Optional[Group]:
        g = self.by_key.get(sig.key())
        if g is None:
            if len(self.by_key) >= MAX_GROUPS:
                self.overflow.add(prop)
                return None
            g = Group(f"{self.prefix}{len(self.by_key) + 1}", sig, self.scope, self.variant, case)
            self.by_key[sig.key()] = g
        g.note(prop)
        g.on_a_full_batch = g.on_a_full_batch or full_batch(case)
        if (g.id, case.token()) not in counted:
            counted.add((g.id, case.token()))
            g.examples += 1
        return g

    def for_property(self, prop: str) -> list[Group]:
        return [g for g in self.by_key.values() if prop in g.properties]

    def __iter__(self):
        return iter(self.by_key.values())
