"""The impl protocol: how the suite drives one tensor-parallel implementation on one rank.

An implementation is an object with two builders. On every rank of a process group the suite
calls one of them with the *full* dense weight ``[out_features, in_features]`` and bias
``[out_features]`` (or ``None``) in the example's dtype; the builder returns a module holding this
rank's shards. The suite then calls :meth:`TensorParallelImpl.forward` with the full input (or, for
a row layer with ``input_is_parallel=True``, this rank's slice of its last dim), back-propagates a
random upstream gradient, and reads the shards and their grads back through :meth:`shards` and
:meth:`shard_grads`.

Example — an adapter for layers that already follow this shape::

    class MyImpl(TensorParallelImpl):
        name = "mine"
        capabilities = Capabilities(uneven_shards=False)

        def column(self, weight, bias, *, gather_output, group):
            return mylib.ColumnLinear.from_dense(weight, bias, gather_output=gather_output, group=group)

        def row(self, weight, bias, *, input_is_parallel, group):
            return mylib.RowLinear.from_dense(weight, bias, input_is_parallel=input_is_parallel, group=group)

Shards are reported in ``nn.Linear`` orientation: a column shard is ``[rows_r, in_features]`` and a
row shard ``[out_features, cols_r]``. The suite never assumes a split convention: it infers each
rank's partition from these shapes and requires that the shards, in rank order, rebuild the full
weight.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from tpconform.spec.dtypes import DTYPES as ALL_DTYPES  # the one list of the spec's dtypes

# the collective primitives an impl's ``primitives()`` may offer (the primitives family's variants)
ALL_PRIMITIVES = ("copy_to", "reduce_from", "scatter_to", "gather_from")


@dataclass(frozen=True)
class Capabilities:
    """What an implementation declares it supports; the suite checks only what is declared.

    ``uneven_shards=False`` means: features not divisible by the world size must raise at
    construction (on every rank). A wrong result is never accepted.

    ``accepts_group=False`` means: the layers cannot be given a process group (they take rank and
    world size from the default group, as in the simple-module convention); the checks that hand a
    layer a TP sub-group (``tests/properties/test_families.py``) do not apply and are skipped.

    ``padded_shards=True`` means: the split dim is padded before it is split, so the shards may end
    in rows that are not part of the layer (ColossalAI's ``VocabParallelEmbedding1D`` pads its
    vocabulary to a multiple of 64 × the world size and splits the padded table evenly). The shards
    are then reported as the layer holds them, padding included; in rank order their rows are the
    real rows followed by padding, the real rows must rebuild the dense weight, and the padding rows
    must get no gradient (a gradient there changes the model's grad norm, and so its clipping). Read
    by the embedding family; a layer without it must hold exactly its rows.

    ``backward=False`` means: the layers are forward-only (inference: vLLM's layers, a ``no_grad``
    path) and their backward is not supported. The suite runs each example's forward under
    ``torch.no_grad()`` and checks only the forward properties (output, ranks agree, shape and dtype,
    shards, repeated calls, the layer as built); every property that reads a backward pass (grads,
    training, usage, communication volume, conversion) is skipped with that reason, never passed, and
    in grading it scores 0 (its points stay in the maximum).

    ``equal_blocks=True`` means: the merged (QKV, gate-up) layers can only express blocks of equal
    size (a packed or strided layout, ``[n_blocks, rows, in]``); the merged strategies then draw equal
    blocks only. Read by the merged family (``families={"merged": {"equal_blocks": True}}``).

    ``primitives`` names the collective primitives ``primitives()`` offers (transformers' TP has
    ``("copy_to", "reduce_from")``); only those are drawn and checked, the others are reported as not
    offered (skipped, never passed; in grading, 0 points). Read by the primitives family.

    ``families`` declares what differs for one family (by its folder's name under
    ``conformance/families``): ``{"embedding": {"uneven_shards": True, "padded_shards": True}}`` for a
    library whose linear layers raise on non-divisible dims while its embedding pads any vocabulary.
    Each family is judged by :meth:`of` its name; a family may set the fields in :data:`OVERRIDABLE`.
    """

    column_gather_output: tuple[bool, ...] = (True, False)
    row_input_is_parallel: tuple[bool, ...] = (False, True)
    uneven_shards: bool = True
    dtypes: tuple[str, ...] = ALL_DTYPES
    accepts_group: bool = True
    padded_shards: bool = False
    backward: bool = True
    equal_blocks: bool = False
    primitives: tuple[str, ...] = ALL_PRIMITIVES
    families: dict[str, dict[str, Any]] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        for name in ("column_gather_output", "row_input_is_parallel", "dtypes", "primitives"):
            if isinstance(getattr(self, name), list):  # a list reads as well as a tuple
                object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in ("column_gather_output", "row_input_is_parallel"):
            options = getattr(self, name)
            if not isinstance(options, tuple) or not all(isinstance(b, bool) for b in options):
                raise ValueError(f"capability {name}: expected a tuple of bools, got {options!r}")
        if not isinstance(self.dtypes, tuple) or not all(d in ALL_DTYPES for d in self.dtypes):
            raise ValueError(f"capability dtypes: expected names from {list(ALL_DTYPES)}, got {self.dtypes!r}")
        if (not isinstance(self.primitives, tuple) or not self.primitives
                or not all(isinstance(p, str) and p in ALL_PRIMITIVES for p in self.primitives)
                or len(set(self.primitives)) != len(self.primitives)):
            raise ValueError(f"capability primitives: expected one or more distinct names from {list(ALL_PRIMITIVES)}, "
                             f"got {self.primitives!r}")
        for name in ("uneven_shards", "accepts_group", "padded_shards", "backward", "equal_blocks"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"capability {name}: expected True or False, got {getattr(self, name)!r}")
        if not isinstance(self.families, dict):
            raise ValueError(f"capability families: expected a dict of family name -> dict, got {self.families!r}")
        for family, overrides in self.families.items():
            if not isinstance(family, str) or not isinstance(overrides, dict):
                raise ValueError(f"capabilities for family {family!r}: expected a dict, got {type(overrides).__name__}")
            unknown = sorted(set(overrides) - OVERRIDABLE)
            if unknown:
                raise ValueError(f"capabilities for family {family!r}: unknown {unknown} "
                                 f"(a family may set {sorted(OVERRIDABLE)})")
            self.of(family)  # each family's own declaration must be well formed too

    def of(self, family: str) -> "Capabilities":
        """The capabilities family ``family`` is judged by: these, with its own declarations over them."""
        overrides = self.families.get(family)
        if not overrides:
            return self
        d = {k: v for k, v in self.as_dict().items() if k != "families"}
        return Capabilities.from_dict({**d, **overrides})

    def as_dict(self) -> dict[str, Any]:
        return {
            "column_gather_output": list(self.column_gather_output),
            "row_input_is_parallel": list(self.row_input_is_parallel),
            "uneven_shards": self.uneven_shards,
            "dtypes": list(self.dtypes),
            "accepts_group": self.accepts_group,
            "padded_shards": self.padded_shards,
            "backward": self.backward,
            "equal_blocks": self.equal_blocks,
            "primitives": list(self.primitives),
            "families": {name: {k: list(v) if isinstance(v, tuple) else v for k, v in o.items()}  # JSON's shapes
                         for name, o in self.families.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Capabilities":
        """The capabilities ``d`` (``as_dict``'s shape) describes; ``ValueError``/``KeyError``/``TypeError``
        when it is malformed (a value of the wrong type is never coerced)."""
        families = d.get("families", {})
        if not isinstance(families, dict):
            raise ValueError(f"capability families: expected a dict of family name -> dict, got {families!r}")

        def options(key: str) -> Any:
            value = d[key]
            return tuple(value) if isinstance(value, (list, tuple)) else value

        return cls(
            column_gather_output=options("column_gather_output"),
            row_input_is_parallel=options("row_input_is_parallel"),
            uneven_shards=d["uneven_shards"],
            dtypes=options("dtypes"),
            accepts_group=d.get("accepts_group", True),
            padded_shards=d.get("padded_shards", False),
            backward=d.get("backward", True),
            equal_blocks=d.get("equal_blocks", False),
            primitives=options("primitives") if "primitives" in d else ALL_PRIMITIVES,
            families={k: dict(v) if isinstance(v, dict) else v for k, v in families.items()},
        )


# what a family may declare for itself (``Capabilities.families``)
OVERRIDABLE = frozenset({"uneven_shards", "dtypes", "padded_shards", "accepts_group", "backward", "equal_blocks",
                         "primitives"})


class TensorParallelImpl:
    """Base class of every implementation the suite checks (see the module docstring)."""

    name: str = "unnamed"
    version: str = ""
    convention: str = ""  # how the layers are written, when not by this protocol (e.g. "simple-module")
    capabilities: Capabilities = Capabilities()
    # seconds :meth:`setup` may take on every rank of a new group (a library that compiles an
    # extension on first use needs minutes); examples keep --tp-timeout
    setup_timeout_s: float = 120.0

    def setup(self, group) -> None:
        """Optional one-time set-up on every rank of a new process group, before its first example,
        under ``setup_timeout_s`` instead of the per-example ``--tp-timeout``: a library's own
        initialisation (``deepspeed.comm.init_distributed``, which compiles its comm extension the
        first time it runs on a machine)."""

    def column(self, weight, bias, *, gather_output: bool, group):  # pragma: no cover - abstract
        raise NotImplementedError

    def row(self, weight, bias, *, input_is_parallel: bool, group):  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, layer, x):
        """Run the layer; adapters unpack tuple outputs or reshape layouts here."""
        return layer(x)

    def shards(self, layer) -> tuple[Any, Optional[Any]]:
        """This rank's weight shard and bias (shard), as the parameters autograd fills."""
        return layer.weight, getattr(layer, "bias", None)

    def as_built(self, layer) -> tuple[Any, Optional[Any]]:
        """This rank's weight shard and bias as the builder made them, before the suite wrote anything
        into them. This protocol's builders are given the values (the shards of the weight and bias
        passed in), so by default what :meth:`shards` reads; an adapter that writes into a layer after
        building it (the simple-module convention's bias starts at zero, then the suite writes a random
        one) returns what was there before."""
        return self.shards(layer)

    def parameters(self, layer) -> list[Any]:
        """The tensors an optimizer steps for this rank's shards (the training step runs
        ``torch.optim.SGD`` over them): by default the shards themselves, which must then be leaf
        tensors. An adapter whose shards are views of other parameters (DTensor's ``to_local()``)
        returns those parameters; the shards must still show the step."""
        return [p for p in self.shards(layer) if p is not None]

    def shard_grads(self, layer) -> tuple[Any, Optional[Any]]:
        weight, bias = self.shards(layer)
        return weight.grad, (None if bias is None else bias.grad)

    def finalize_grads(self, layer, group) -> Optional[str]:
        """Optional: what the library's training loop does to the layer's grads after backward and
        before the optimizer step, where the library leaves part of the gradient computation to it
        (megatron-core's sequence-parallel row bias grad is partial on each rank by design; its
        ``finalize_model_grads`` sums it over the TP group). Called by the suite on every rank of
        ``group`` after each backward of the families that run one layer on the world (sequence
        parallel, merged); the grads are judged as it leaves them. Returns one line saying what it
        did (recorded with the result and shown in reports), or ``None``: nothing declared, and the
        grads are judged as backward left them (a partial grad is then a violation)."""
        return None

    def column_sequence_parallel(self, weight, bias, *, group):
        """Optional: a column layer whose input is this rank's shard of the sequence (dim 0; the
        length divides by the world size), all-gathered forward and reduce-scattered backward; the
        output stays sharded on the last dim. ``None``: not offered (its properties are skipped)."""
        return None

    def row_sequence_parallel(self, weight, bias, *, group):
        """Optional: a row layer fed its slice of the last dim of the full sequence, whose partial
        outputs are reduce-scattered along the sequence (dim 0); its bias grad must be the dense one
        (reduced over the ranks). ``None``: not offered."""
        return None

    def vocab_parallel_embedding(self, weight, *, group):
        """Optional: an embedding whose table ``[vocab, dim]`` has its rows sharded over ``group``;
        called with int64 ids (any shape), it returns the dense lookup on every rank. ``shards``
        reads its table shard as the weight. ``None``: not offered."""
        return None

    def merged_column(self, weights, biases, *, group):
        """Optional: a column layer (output left sharded) over several output blocks (QKV, gate-up),
        given as lists of block weights ``[out_b, in]`` and biases (or ``None``); each block is
        sharded on its own, so a rank's output is its slice of every block, in block order. ``shards``
        reads its weight shard (its block slices, concatenated). ``None``: not offered."""
        return None

    def vocab_parallel_cross_entropy(self, group):
        """Optional: a loss ``(logits, target) -> loss`` over logits sharded along the vocabulary (rank
        ``r`` of ``p`` holds columns ``r·V/p … (r+1)·V/p``, ``V`` a multiple of ``p``): every rank
        returns the dense per-token loss ``logsumexp(z) − z[target]``, and its logit shard gets its
        columns of the dense grad. ``None``: not offered."""
        return None

    def primitives(self, group) -> Optional[dict[str, Any]]:
        """Optional: the four collective autograd functions on ``group``, each ``x -> tensor``, keyed
        ``copy_to`` (identity / all-reduce of the grad), ``reduce_from`` (all-reduce / identity),
        ``scatter_to`` (this rank's slice of the last dim / all-gather) and ``gather_from``
        (all-gather of equal-shaped slices along the last dim / this rank's slice). ``None``: not
        offered, and their properties are skipped."""
        return None

    def describe(self) -> dict[str, Any]:
        caps = self.capabilities
        if not isinstance(caps, Capabilities):
            caps = Capabilities()
        return {"name": self.name, "version": self.version, "convention": str(self.convention or ""),
                "capabilities": caps.as_dict(), "setup_timeout_s": self.setup_timeout_s}

