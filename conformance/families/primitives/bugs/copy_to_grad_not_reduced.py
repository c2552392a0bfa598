"""Bug: a library offering copy-to and reduce-from only (it declares ``primitives``, as transformers'
TP does) forgets copy-to's backward all-reduce: each rank keeps its own upstream grad.

Only a suite that can check a subset of the primitives finds it: an impl that had to offer all four
or none would offer none, and nothing of it would be checked.
Exposed by: copy-to at world size >= 2 (``primitive_backward_matches_its_dense_meaning``)."""

import torch
from tpconform.impls.limited import TwoPrimitivesImpl
from tpconform.impls.reference import Collectives, ReduceFromParallel


class CopyToLocalGrad(torch.autograd.Function):
    """Identity forward; identity backward (the all-reduce is missing)."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad


class Impl(TwoPrimitivesImpl):
    name = "bug-copy-to-grad-not-reduced"

    def primitives(self, group):
        comm = Collectives(group)
        return {"copy_to": lambda x: CopyToLocalGrad.apply(x),
                "reduce_from": lambda x: ReduceFromParallel.apply(x, comm)}
