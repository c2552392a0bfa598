"""How each kind of layer is sharded, as a value (as torch's ``ColwiseParallel`` / ``RowwiseParallel``):
which weight dim is split, whether the bias goes with it, and which tensors each rank sees only a
slice of. Code asks ``case.sharding`` instead of testing a kind string."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Sharding:
    kind: str  # "column" or "row": the name cases and reports use
    weight_dim: int  # the dim of the weight ([out, in], nn.Linear's orientation) split over the ranks
    bias_sharded: bool  # the bias is split with the weight (column) or held whole, added once (row)
    option: str  # the layer's one option: gather_output (column) or input_is_parallel (row)

    def split_features(self, case) -> int:
        """The size of the split dim: out_features (column) or in_features (row)."""
        return case.out_features if self.weight_dim == 0 else case.in_features

    def option_value(self, case) -> bool:
        return bool(getattr(case, self.option))

    def output_is_sharded(self, case) -> bool:
        """Each rank returns only its slice of the output (a column layer with gather_output=False)."""
        return self.weight_dim == 0 and not case.gather_output

    def input_is_sliced(self, case) -> bool:
        """Each rank is given only its slice of the input (a row layer with input_is_parallel=True)."""
        return self.weight_dim == 1 and case.input_is_parallel

    def sliced_tensor(self, case) -> Optional[str]:
        """The example tensor each rank receives only its slice of (last dim): ``"x"`` for a sliced row
        input, ``"grad_out"`` for a sharded column output (its upstream grad), else ``None``."""
        if self.input_is_sliced(case):
            return "x"
        if self.output_is_sharded(case):
            return "grad_out"
        return None

    def weight_index(self, s: slice) -> tuple[slice, slice]:
        """The index of a rank's shard (its slice ``s`` of the split dim) in the full weight."""
        return (s, slice(None)) if self.weight_dim == 0 else (slice(None), s)

    def bias_index(self, s: slice) -> slice:
        """The index of a rank's bias in the full bias: its slice, or all of it."""
        return s if self.bias_sharded else slice(None)


COLUMN = Sharding("column", weight_dim=0, bias_sharded=True, option="gather_output")
ROW = Sharding("row", weight_dim=1, bias_sharded=False, option="input_is_parallel")
SHARDINGS = {s.kind: s for s in (COLUMN, ROW)}
