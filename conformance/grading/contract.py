"""An assignment's contract: which cases a submission is graded on (``tpconform grade --contract FILE``).

The grader writes the contract; a submission never can (nothing of it is read from the submission,
and what the submission declares in ``TP_CAPABILITIES`` does not narrow it). Cases inside the contract
are scored; a smaller budget of cases outside it still runs, and what fails there is reported as
"beyond the contract", worth no points.

Cases inside the contract are drawn from a strategy built *within* it (``tpconform.families.linear.strategy.layer_cases``
with the contract's world sizes, dtypes, divisibility, bias and batch dims), never by rejecting draws.
Cases beyond it come from one strategy per dimension the contract restricts, with that dimension
drawn outside the contract's values (a case the union happens to draw inside the contract is skipped
by the caller, see :meth:`Contract.contains`). The file format is documented in docs/GRADING.md;
examples are in ``conformance/grading/contracts/``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Optional

from hypothesis import strategies as st
from tpconform.families.folders import names as family_folders
from tpconform.families.linear.case import LayerCase
from tpconform.families.linear.case_classes import covering_cases
from tpconform.families.linear.strategy import VARIANTS, Variant, anchor_cases, layer_cases, parallelism_cases
from tpconform.grading.catalog import PRIMARY
from tpconform.grading.scoring import load_weights
from tpconform.spec.options import OptionError, read_toml
from tpconform.strategies.layers import DTYPES, world_sizes

VARIANT_NAMES = tuple(str(v) for v in VARIANTS)
# divisible: only dims the world size divides are in the contract (the others are beyond it);
# uneven-may-raise: non-divisible dims too, where raising at construction on every rank is a right answer;
# uneven: non-divisible dims too, and the layer must compute them
DIVISIBILITY = ("divisible", "uneven-may-raise", "uneven")
BIAS = ("both", "with", "without")
# input ranks: 1 = a single vector [in_features], 2 = [batch, in_features], 3 = three dims or more
INPUT_RANKS = (1, 2, 3)
_BATCH_DIMS = {1: (0,), 2: (1,), 3: (2, 3)}
FAMILIES = tuple(family_folders())  # by folder: the host reads a contract without importing the families (torch)
KEYS = {"name", "families", "world_sizes", "dtypes", "divisibility", "variants", "bias", "input_ranks", "beyond"}
BEYOND_KEYS = {"examples", "world_sizes", "dtypes"}
MAX_WORLD_SIZE = 16


class ContractError(Exception):
    """A contract file that cannot be used; the message is one line for the user."""


def input_rank(case: LayerCase) -> int:
    """1, 2 or 3 (three dims or more): the input's number of dims, as a contract counts them."""
    return min(len(case.batch_shape) + 1, 3)


@dataclass(frozen=True)
class Contract:
    name: str
    world_sizes: tuple[int, ...]
    dtypes: tuple[str, ...]
    divisibility: str
    variants: tuple[str, ...]
    bias: str
    input_ranks: tuple[int, ...]
    beyond_examples: int
    beyond_world_sizes: tuple[int, ...]
    beyond_dtypes: tuple[str, ...]
    source: str = ""
    families: tuple[str, ...] = (PRIMARY,)  # the families graded (each scores where the submission offers it)

    # -- what is inside ------------------------------------------------------------------------------
    @property
    def uneven_in_contract(self) -> bool:
        return self.divisibility != "divisible"

    @property
    def raising_on_uneven_conforms(self) -> bool:
        """For a non-divisible case inside the contract: does raising at construction on every rank count as right?"""
        return self.divisibility == "uneven-may-raise"

    def _biases(self) -> tuple[bool, ...]:
        return {"both": (False, True), "with": (True,), "without": (False,)}[self.bias]

    def batch_dims(self) -> tuple[int, ...]:
        return tuple(d for r in self.input_ranks for d in _BATCH_DIMS[r])

    def outside(self, case: LayerCase) -> list[str]:
        """Why ``case`` is beyond the contract, one phrase per dimension (empty: inside it)."""
        why = []
        variant = str(Variant(case.kind, case.gather_output, case.input_is_parallel))
        if variant not in self.variants:
            why.append(f"variant {variant}")
        if case.world_size not in self.world_sizes:
            why.append(f"world size {case.world_size}")
        if case.dtype not in self.dtypes:
            why.append(f"dtype {case.dtype}")
        if case.uneven and not self.uneven_in_contract:
            why.append("dims the world size does not divide")
        if case.bias not in self._biases():
            why.append("a bias" if case.bias else "no bias")
        if input_rank(case) not in self.input_ranks:
            why.append({1: "a 1-D input", 2: "a 2-D input", 3: "an input of 3 dims or more"}[input_rank(case)])
        return why

    def contains(self, case: LayerCase) -> bool:
        return not self.outside(case)

    def case_class(self, case: LayerCase) -> tuple:
        """The contract class of a case inside it: (world size, bias, input rank, dims divisible)."""
        return (case.world_size, case.bias, input_rank(case), not case.uneven)

    def case_classes(self) -> set[tuple]:
        """Every class of the contract: each world size x bias setting x input rank (x divisible or not,
        when non-divisible dims are inside it; world size 1 divides everything)."""
        divisible = (True, False) if self.uneven_in_contract else (True,)
        return {(w, b, r, d) for w in self.world_sizes for b in self._biases() for r in self.input_ranks
                for d in divisible if d or w > 1}

    # -- strategies ----------------------------------------------------------------------------------
    def cases(self, variant: Variant):
        """Cases inside the contract for ``variant`` (built within it: no draw is rejected)."""
        bias = self._biases()
        return layer_cases(variant=variant, world_sizes=world_sizes(allowed=self.world_sizes), dtypes=self.dtypes,
                           uneven=self.uneven_in_contract, bias=bias[0] if len(bias) == 1 else None,
                           batch_dims=self.batch_dims())

    def beyond_cases(self, variant: Variant):
        """Cases beyond the contract for ``variant`` (a union, one part per restricted dimension), or
        ``None`` when there is nothing beyond it within the ``[beyond]`` space."""
        sizes, dtypes = self.beyond_world_sizes, self.beyond_dtypes
        if str(variant) not in self.variants:
            return layer_cases(variant=variant, world_sizes=world_sizes(allowed=sizes), dtypes=dtypes)
        parts = []
        other_sizes = [w for w in sizes if w not in self.world_sizes]
        if other_sizes:
            parts.append(layer_cases(variant=variant, world_sizes=world_sizes(allowed=other_sizes), dtypes=dtypes))
        other_dtypes = [d for d in dtypes if d not in self.dtypes]
        if other_dtypes:
            parts.append(layer_cases(variant=variant, world_sizes=world_sizes(allowed=sizes), dtypes=other_dtypes))
        split = [w for w in sizes if w >= 2]
        if not self.uneven_in_contract and split:
            parts.append(layer_cases(variant=variant, world_sizes=world_sizes(allowed=split), dtypes=dtypes,
                                     uneven=True))
        other_bias = [b for b in (False, True) if b not in self._biases()]
        if other_bias:
            parts.append(layer_cases(variant=variant, world_sizes=world_sizes(allowed=sizes), dtypes=dtypes,
                                     bias=other_bias[0]))
        other_dims = tuple(d for r in INPUT_RANKS if r not in self.input_ranks for d in _BATCH_DIMS[r])
        if other_dims:
            parts.append(layer_cases(variant=variant, world_sizes=world_sizes(allowed=sizes), dtypes=dtypes,
                                     batch_dims=other_dims))
        return st.one_of(*parts) if parts else None

    def anchors(self, variant: Variant, parallelism: bool = False) -> list[LayerCase]:
        """Cases every search inside the contract meets first: each world size with each bias and each
        input rank of the contract (dims divisible; one non-divisible case per world size above 1 when
        the contract has them), dtypes in turn, the transposed-layout anchor of
        ``tpconform.families.linear.strategy.anchor_cases`` where the contract allows it, with ``parallelism``
        (where the grading measures the loopback's bytes) the parallelism cases
        (``tpconform.families.linear.strategy.parallelism_cases``: wide, one batch row) inside it, then the
        covering cases ``pytest`` runs at the contract's world sizes and dtypes
        (``tpconform.families.linear.case_classes.covering_cases``) that lie inside it."""
        out: list[LayerCase] = []
        i = 0
        for ws in self.world_sizes:
            for bias in self._biases():
                for rank in self.input_ranks:
                    batch = {1: (), 2: (3,), 3: (2, 3)}[rank]
                    out.append(LayerCase(kind=variant.kind, world_size=ws, in_features=2 * ws, out_features=3 * ws,
                                         batch_shape=batch, dtype=self.dtypes[i % len(self.dtypes)], bias=bias,
                                         gather_output=variant.gather_output,
                                         input_is_parallel=variant.input_is_parallel, seed=301 + i))
                    i += 1
            if self.uneven_in_contract and ws >= 2:
                n = 2 * ws + 1
                out.append(LayerCase(kind=variant.kind, world_size=ws, in_features=n, out_features=n,
                                     batch_shape=(3,) if 2 in self.input_ranks else out[-1].batch_shape,
                                     dtype=self.dtypes[i % len(self.dtypes)], bias=self._biases()[-1],
                                     gather_output=variant.gather_output, input_is_parallel=variant.input_is_parallel,
                                     seed=301 + i))
                i += 1
        for case in anchor_cases(variant, self.world_sizes, list(self.dtypes)):
            if case.layout != "contiguous":
                case = replace(case, bias=self._biases()[-1])
                if self.contains(case):
                    out.append(case)
        if parallelism:
            rank = min(self.input_ranks)
            out += [case for case in parallelism_cases(variant, self.world_sizes, list(self.dtypes),
                                                       batch_dims=rank - 1, bias=self._biases()[-1])
                    if self.contains(case)]
        out += [case for case in self.covering(variant) if self.contains(case)]
        return unique(out)

    def covering(self, variant: Variant) -> list[LayerCase]:
        """The covering cases ``pytest`` runs (``tests/properties/test_case_classes.py``) at the contract's
        world sizes and dtypes, then at the ``[beyond]`` ones: inside the contract or beyond it."""
        return unique(covering_cases(variant, self.world_sizes, list(self.dtypes))
                      + covering_cases(variant, self.beyond_world_sizes, list(self.beyond_dtypes)))

    def beyond_anchors(self, variant: Variant) -> list[LayerCase]:
        """Cases every search beyond the contract meets first: the covering cases outside it."""
        return [case for case in self.covering(variant) if not self.contains(case)]

    def as_dict(self) -> dict:
        return {"name": self.name, "source": self.source, "world_sizes": list(self.world_sizes),
                "dtypes": list(self.dtypes), "divisibility": self.divisibility, "variants": list(self.variants),
                "bias": self.bias, "input_ranks": list(self.input_ranks),
                "beyond": {"examples": self.beyond_examples, "world_sizes": list(self.beyond_world_sizes),
                           "dtypes": list(self.beyond_dtypes)}, "families": list(self.families)}

    @classmethod
    def from_dict(cls, d: dict) -> "Contract":
        b = d["beyond"]
        return cls(name=d["name"], world_sizes=tuple(d["world_sizes"]), dtypes=tuple(d["dtypes"]),
                   divisibility=d["divisibility"], variants=tuple(d["variants"]), bias=d["bias"],
                   input_ranks=tuple(d["input_ranks"]), beyond_examples=b["examples"],
                   beyond_world_sizes=tuple(b["world_sizes"]), beyond_dtypes=tuple(b["dtypes"]),
                   source=d.get("source", ""), families=tuple(d.get("families", [PRIMARY])))

    def summary(self) -> str:
        """One line a student can read: what the assignment requires."""
        ranks = ", ".join({1: "1-D", 2: "2-D", 3: "3-D and more"}[r] for r in self.input_ranks)
        uneven = {"divisible": "dims divisible by the world size only",
                  "uneven-may-raise": "dims the world size does not divide: compute them or raise at construction "
                                      "on every rank",
                  "uneven": "dims the world size does not divide must work"}[self.divisibility]
        bias = {"both": "with and without a bias", "with": "with a bias", "without": "without a bias"}[self.bias]
        return (f"{', '.join(self.variants)}; world sizes {', '.join(map(str, self.world_sizes))}; "
                f"{', '.join(self.dtypes)}; {uneven}; {bias}; {ranks} inputs")


def unique(cases: list[LayerCase]) -> list[LayerCase]:
    """``cases`` without repeats (by token), in their order."""
    return list({case.token(): case for case in reversed(cases)}.values())[::-1]


def _list(path: str, key: str, value: Any, allowed: Optional[tuple] = None, kind: type = str) -> tuple:
    if not isinstance(value, list) or not value or not all(isinstance(v, kind) and not isinstance(v, bool)
                                                           for v in value):
        raise ContractError(f"--contract={path}: {key} must be a non-empty list of {kind.__name__}s, got {value!r}")
    if allowed is not None:
        bad = [v for v in value if v not in allowed]
        if bad:
            raise ContractError(f"--contract={path}: {key}: unknown {bad}; choose from {', '.join(map(str, allowed))}")
    return tuple(dict.fromkeys(value))


def _sizes(path: str, key: str, value: Any) -> tuple[int, ...]:
    sizes = _list(path, key, value, kind=int)
    if any(not 1 <= w <= MAX_WORLD_SIZE for w in sizes):
        raise ContractError(f"--contract={path}: {key}: world sizes are 1 to {MAX_WORLD_SIZE}, got {list(sizes)}")
    return tuple(sorted(sizes))


def _choice(path: str, key: str, value: Any, allowed: tuple) -> str:
    if value not in allowed:
        raise ContractError(f"--contract={path}: {key} = {value!r}: choose from {', '.join(allowed)}")
    return value


def default_variants() -> tuple[str, ...]:
    """A contract's variants when it names none: the required variants of the default weights
    (``conformance/grading/weights.toml``: the simple-module convention's two layers)."""
    return tuple(load_weights().required)


def load_contract(path: str) -> Contract:
    """The contract in the TOML file ``path``; raises :class:`ContractError` (one line) when it is unusable."""
    try:
        data = read_toml(path, f"--contract={path}")
    except OptionError as exc:
        raise ContractError(str(exc)) from None
    unknown = set(data) - KEYS
    if unknown:
        raise ContractError(f"--contract={path}: unknown keys {sorted(unknown)}; keys are {', '.join(sorted(KEYS))}")
    for key in ("world_sizes", "dtypes"):
        if key not in data:
            raise ContractError(f"--contract={path}: {key} is missing (see docs/GRADING.md, 'Contracts')")
    name = data.get("name", path)
    if not isinstance(name, str):
        raise ContractError(f"--contract={path}: name must be a string")
    fams = _list(path, "families", data.get("families", [PRIMARY]), FAMILIES)
    sizes = _sizes(path, "world_sizes", data["world_sizes"])
    dtypes = _list(path, "dtypes", data["dtypes"], DTYPES)
    beyond = data.get("beyond", {})
    if not isinstance(beyond, dict) or set(beyond) - BEYOND_KEYS:
        raise ContractError(f"--contract={path}: [beyond] takes only {', '.join(sorted(BEYOND_KEYS))}")
    examples = beyond.get("examples", 5)
    if isinstance(examples, bool) or not isinstance(examples, int) or not 0 <= examples <= 10000:
        raise ContractError(f"--contract={path}: [beyond] examples must be an integer from 0, got {examples!r}")
    return Contract(
        name=name, world_sizes=sizes, dtypes=dtypes,
        divisibility=_choice(path, "divisibility", data.get("divisibility", "divisible"), DIVISIBILITY),
        variants=_list(path, "variants", data.get("variants", list(default_variants())), VARIANT_NAMES),
        bias=_choice(path, "bias", data.get("bias", "both"), BIAS),
        input_ranks=tuple(sorted(_list(path, "input_ranks", data.get("input_ranks", list(INPUT_RANKS)), INPUT_RANKS,
                                       int))),
        beyond_examples=examples,
        beyond_world_sizes=_sizes(path, "[beyond] world_sizes", beyond.get("world_sizes", list(sizes))),
        beyond_dtypes=_list(path, "[beyond] dtypes", beyond.get("dtypes", list(DTYPES)), DTYPES),
        source=path,
        families=tuple(fams),
    )
