"""Adapter for the simple-module convention used by course and benchmark graders.

A file (or module) exposes::

    ColumnParallelLinear(in_features, out_features, bias, master_weight)
    RowParallelLinear(in_features, out_features, bias, master_weight)

Rank and world size come from the default process group; ``.weight`` / ``.bias`` hold the local
shard; the bias starts at zero; the column layer returns the gathered output; the row layer's
``forward`` receives this rank's slice of the input and returns the full, reduced output.

The suite builds each layer from the full ``master_weight``, then writes a random non-zero bias into
it (a zero bias hides the bias-added-on-every-rank bug). It does not assume a split convention:
each rank's bias rows are found from the weight rows it kept.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import sys
import weakref

import torch
import torch.distributed as dist
from tpconform.impls.entries import ImplError
from tpconform.impls.protocol import Capabilities, TensorParallelImpl


def load_module_file(path: str):
    name = "tpconform_candidate_" + os.path.splitext(os.path.basename(path))[0].replace("-", "_")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImplError(f"--impl={path}: cannot load it as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    folder = os.path.dirname(os.path.abspath(path))
    if folder not in sys.path:
        sys.path.insert(0, folder)  # a submission may import its sibling files
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ImplError(f"--impl={path}: importing it failed: {type(exc).__name__}: {exc}") from None
    return module


def check_loadable(module, name: str, *, named_module: bool = True) -> None:
    """Refuse at load, in one line, what the simple-module convention cannot drive (``ImplError``): a module
    named without its class that defines an adapter (``named_module``: ``--impl=FILE`` or ``--impl=module``),
    and layers whose constructor cannot take ``(in_features, out_features, bias, master_weight)``."""
    adapters = _adapters_defined_in(module) if named_module else []
    if adapters:
        spec = _module_spec(module, name)
        how = f"--impl={spec}:{adapters[0]}" if spec else "--impl=module:Class, the module as Python imports it"
        raise ImplError(f"--impl={name}: it defines the adapter {' / '.join(adapters)} (a TensorParallelImpl): "
                        f"name it, {how}")
    for cls_name in ("ColumnParallelLinear", "RowParallelLinear"):
        why = _signature_misfit(getattr(module, cls_name, None))
        if why:
            raise ImplError(f"--impl={name}: {cls_name}{why}, where the simple-module convention calls "
                            f"{cls_name}(in_features, out_features, bias, master_weight); for other "
                            "constructors, write an adapter (README: 'Write an adapter')")


def _adapters_defined_in(module) -> list[str]:
    """The TensorParallelImpl subclasses ``module`` defines itself (an adapter module named without its class),
    most derived first (a base the module also subclasses last)."""
    name = getattr(module, "__name__", None)
    own = [v for v in vars(module).values() if isinstance(v, type) and issubclass(v, TensorParallelImpl)
           and v is not TensorParallelImpl and v.__module__ == name] if name else []
    leaves = {v for v in own if not any(o is not v and issubclass(o, v) for o in own)}
    return [v.__name__ for v in sorted(own, key=lambda v: (v not in leaves, v.__name__))]


def _module_spec(module, name: str) -> str:
    """How ``--impl`` names ``module`` as ``module:object``: its dotted name, or a file's path from the working
    directory as one (``mylib/tp_adapter.py`` -> ``mylib.tp_adapter``); ``""`` where that is no importable name
    (a file outside the working directory, a name that is not an identifier)."""
    if name.endswith(".py"):
        path = getattr(module, "__file__", None) or name
        name = os.path.relpath(os.path.splitext(os.path.abspath(path))[0])
        if name.startswith(".."):
            return ""
        name = name.replace(os.sep, ".")
    return name if all(part.isidentifier() for part in name.split(".")) else ""


def _signature_misfit(cls) -> str:
    """Why ``cls(in_features, out_features, bias, master_weight)`` cannot be called (its signature), or ``""``
    (also where the signature cannot be read: the call itself then says)."""
    if cls is None:
        return ""
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):
        return ""
    try:
        sig.bind(1, 1, True, None)
    except TypeError as exc:
        return f"{sig} cannot be called with four arguments ({exc})"
    return ""


def _gather_ints(values: list[int], group) -> list[list[int]]:
    t = torch.tensor(values, dtype=torch.int64)
    out = [torch.empty_like(t) for _ in range(dist.get_world_size(group))]
    dist.all_gather(out, t, group=group)
    return [o.tolist() for o in out]


class SimpleModuleImpl(TensorParallelImpl):
    """Wraps a module in the simple-module convention (column gathers; row takes its input slice)."""

    # Non-divisible dims may be rejected at construction (a wrong result still fails). A module
    # can narrow or widen this with a ``TP_CAPABILITIES = {"dtypes": [...], ...}`` dict. The layers
    # take rank and world size from the default group, so they can never be given a TP sub-group
    # (``accepts_group`` stays False whatever the module declares).
    capabilities = Capabilities(column_gather_output=(True,), row_input_is_parallel=(True,), uneven_shards=False,
                                accepts_group=False)

    convention = "simple-module"

    def __init__(self, module, name: str = "simple-module"):
        missing = [c for c in ("ColumnParallelLinear", "RowParallelLinear") if not hasattr(module, c)]
        if missing:
                raise ImplError(f"--impl={name}: it lacks {' and '.join(missing)} (simple-module convention)")
        self.module = module
        self.name = name
        overrides = getattr(module, "TP_CAPABILITIES", None)
        if isinstance(overrides, dict):
            try:
                declared = Capabilities.from_dict({**self.capabilities.as_dict(), **overrides, "accepts_group": False})
                families = {f: {k: v for k, v in o.items() if k != "accepts_group"}
                            for f, o in declared.families.items()}
                self.capabilities = Capabilities.from_dict({**declared.as_dict(), "families": families})
            except (TypeError, ValueError, KeyError) as exc:
                raise ImplError(f"--impl={name}: TP_CAPABILITIES is malformed: {exc}") from None
            fixed = {k: list(getattr(declared, k)) for k in ("column_gather_output", "row_input_is_parallel")
                     if set(getattr(declared, k)) != {True}}
            if fixed:
                raise ImplError(f"--impl={name}: TP_CAPABILITIES declares {fixed}, but the simple-module convention "
                                "never tells a layer which (its column layer gathers its output, its row layer takes "
                                "its input slice): only [True]; for the other variants, write an adapter")
        self.version = str(getattr(module, "__version__", ""))
        self._bias_as_built: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def _build(self, cls, weight, bias, group, kind: str):
        out_features, in_features = weight.shape
        try:
            layer = cls(in_features, out_features, bias is not None, weight.clone())
            rows = int(layer.weight.shape[0]) if kind == "column" else 0
            error = None
        except Exception as exc:  # every rank must still join the exchange below
            layer, rows, error = None, -1, exc
        sizes = [r[0] for r in _gather_ints([rows], group)]
        if error is not None:
            raise error
        if any(s < 0 for s in sizes):
            return layer  # another rank's build raised: the suite's status exchange reports that rank's error
        # the random bias, written where the layer's bias has the shape its weight rows imply; a bias
        # of another shape (or none) is left as the layer made it, for the shards property to report
        own = getattr(layer, "bias", None)
        if isinstance(own, torch.Tensor):  # the convention's bias as built (zero), before the suite's is written
            try:
                self._bias_as_built[layer] = own.detach().clone()
            except TypeError:  # a layer that cannot be weakly referenced: its bias as built is not kept
                pass
        if bias is not None and isinstance(own, torch.Tensor):
            if kind == "column":
                rank = dist.get_rank(group)
                start = sum(sizes[:rank])
                bias = bias[start : start + sizes[rank]] if start + sizes[rank] <= out_features else None
            if bias is not None and own.shape == bias.shape:
                with torch.no_grad():
                    own.copy_(bias)
        return layer

    def as_built(self, layer):
        """The weight as built (the suite writes only the bias) and the bias before the suite wrote its own."""
        weight, bias = self.shards(layer)
        return weight, self._bias_as_built.get(layer, bias)

    def column(self, weight, bias, *, gather_output, group):
        return self._build(self.module.ColumnParallelLinear, weight, bias, group, "column")

    def row(self, weight, bias, *, input_is_parallel, group):
        return self._build(self.module.RowParallelLinear, weight, bias, group, "row")
