"""Bug: the column layer memoizes its output by input shape (a cache meant for a gather buffer), so
a second call with a same-shaped input returns the first call's output.

Exposed by: any column case whose output is not zero (a non-empty batch); seen on the second call."""

from tpconform.impls.reference import ColumnParallelLinear, ReferenceImpl


class CachingColumn(ColumnParallelLinear):
    def __init__(self, weight, bias=None, **kw):
        super().__init__(weight, bias, **kw)
        self.cache = {}

    def forward(self, x):
        key = tuple(x.shape)
        if key not in self.cache:
            self.cache[key] = super().forward(x)
        return self.cache[key]


class Impl(ReferenceImpl):
    name = "bug-stale-output-cache"

    def column(self, weight, bias, *, gather_output, group):
        return CachingColumn(weight, bias, gather_output=gather_output, group=group)
