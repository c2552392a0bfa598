"""``python -m tpconform replay --impl=SPEC TOKEN [--property=NAME]``: one case of any family, run
once, every property of its family judged (or only ``NAME``); exit 1 when one is violated, 2 for
bad input (an unreadable token, an impl that does not load, a property the family does not have)."""

from __future__ import annotations

import sys

from tpconform.engine.runner import ImplUnusable
from tpconform.engine.suite import Suite, format_failure
from tpconform.families.registry import family_of, read_token
from tpconform.impls.registry import ImplError, classify
from tpconform.transport.harness import GroupPool


def replay(args) -> int:
    try:
        case = read_token(args.case)
    except (ValueError, TypeError, KeyError) as exc:
        print(f"replay: cannot read the case token: {exc}", file=sys.stderr)
        return 2
    fam = family_of(case)
    if args.property and args.property not in fam.properties:
        print(f"replay: the {fam.name} family has no property {args.property!r}; it has {list(fam.properties)}",
              file=sys.stderr)
        return 2
    suite = Suite(args.impl, GroupPool(timeout_s=args.timeout))
    try:
        classify(args.impl)
        suite.description
        why_not = fam.not_applicable(suite, None, args.property or "") if fam.name == "subgroups" else None
        if why_not:
            print(f"replay: {why_not}", file=sys.stderr)
            return 2
        names = [args.property] if args.property else list(fam.properties)
        for name in list(names):  # left out by its capabilities (forward-only: the grads; a primitive not offered)
            why = fam.not_declared(suite, fam.variant_of(case), name)
            if why:
                print(f"not checked: {why}")
                names.remove(name)
        if not names:
            return 0
        ev = suite.evidence(case)
        if ev is None:
            print(f"replay: {args.impl} offers no {fam.offered_by or fam.title}", file=sys.stderr)
            return 2
        failed = 0
        for name in names:
            found = fam.judge(ev, name)
            if found:
                failed += 1
                print(format_failure(ev, name, found, args.impl, fam), end="\n\n")
            else:
                print(f"ok: {name}")
        print(f"{len(names) - failed} passed, {failed} failed")
        return 1 if failed else 0
    except (ImplError, ImplUnusable) as exc:
        print(str(exc), file=sys.stderr)
        return 2
    finally:
        suite.pool.close()
