"""What a rank uses to run any family's example (worker side; public to every family's ``worker.py``):
the status exchange among the ranks, memory layouts, the collective counter, error text."""

from __future__ import annotations

import importlib.util
import os
import traceback

import torch
import torch.distributed as dist
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SUITE_DIRS = tuple(os.path.join(_ROOT, part) + os.sep for part in ("transport", "families", "engine", "spec"))
_SUITE_FILES = tuple(os.path.abspath(spec.origin) for spec in map(importlib.util.find_spec, (
    "tpconform.impls.protocol", "tpconform.impls.simple_module")) if spec is not None and spec.origin)  # the adapters'
# a family folder's candidate code: its reference layers and its seeded bugs (conformance/families/folders.py)
_FAMILIES_DIR = os.path.join(_ROOT, "families") + os.sep
_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep
_STDLIB_DIR = os.path.dirname(os.path.abspath(traceback.__file__)) + os.sep


def _under_test(filename: str) -> bool:
    """A frame of the code under test: not the suite's own, torch's or the standard library's."""
    if filename.startswith(_FAMILIES_DIR) and (filename.endswith(os.sep + "reference.py")
                                               or os.sep + "bugs" + os.sep in filename[len(_FAMILIES_DIR):]):
        return True
    if filename.startswith(_SUITE_DIRS + (_TORCH_DIR,)) or filename in _SUITE_FILES:
        return False
    return not filename.startswith(_STDLIB_DIR) or "-packages" + os.sep in filename[len(_STDLIB_DIR):]


def error_text(exc: BaseException) -> str:
    """``Type: message`` and the frames of the code under test that raised it (file:line and source):
    frames of the suite, torch and the standard library are left out; when none is left (the error
    is torch's or the suite's own), its last three frames."""
    frames = traceback.extract_tb(exc.__traceback__)
    own = [f for f in frames if _under_test(f.filename)]
    lines = "".join(traceback.format_list(own[-6:] or frames[-3:])).splitlines()
    shown = [line for line in lines if line.strip(" ^~")]  # not the lines of carets under the source
    return "\n".join([f"{type(exc).__name__}: {exc}", *shown])


def exchange(values: list[int], group) -> list[list[int]]:
    """A harness all-gather of a few ints (status and shard shapes) among the ranks."""
    t = torch.tensor(values, dtype=torch.int64)
    out = [torch.empty_like(t) for _ in range(dist.get_world_size(group))]
    dist.all_gather(out, t, group=group)
    return [o.tolist() for o in out]


def offsets(sizes: list[int]) -> list[int]:
    return [sum(sizes[:r]) for r in range(len(sizes))]


def noncontiguous(t: torch.Tensor) -> torch.Tensor:
    """The same values, laid out with a stride of 2 in the last dim."""
    wide = torch.zeros(*t.shape[:-1], t.shape[-1] * 2, dtype=t.dtype)
    view = wide[..., ::2]
    view.copy_(t)
    return view


def laid_out(t: torch.Tensor, layout: str) -> torch.Tensor:
    """The same values in a given memory layout (``tpconform.families.linear.case.LAYOUTS``); a layout that means
    nothing for ``t``'s dims gives a contiguous copy. ``expanded`` assumes ``t``'s values repeat
    along dim 0 (``cases.make_tensors`` makes them so) and gives a stride-0 view of its first row."""
    if layout == "strided":
        return noncontiguous(t)
    if layout == "narrowed":
        wide = torch.zeros(*t.shape[:-1], t.shape[-1] + 2, dtype=t.dtype, device=t.device)
        view = wide.narrow(-1, 1, t.shape[-1])
        view.copy_(t)
        return view
    if layout == "offset":
        buffer = torch.zeros(t.numel() + 3, dtype=t.dtype, device=t.device)
        view = buffer[3:].view(t.shape)
        view.copy_(t)
        return view
    if layout == "transposed" and t.dim() >= 2:
        return t.transpose(-1, -2).contiguous().transpose(-1, -2)
    if layout == "batch_permuted" and t.dim() >= 3:
        order = [*reversed(range(t.dim() - 1)), t.dim() - 1]  # its own inverse
        return t.permute(order).contiguous().permute(order)
    if layout == "expanded" and t.dim() >= 2 and t.shape[0] > 0:
        return t.narrow(0, 0, 1).clone().expand(t.shape)
    return t.clone()


def as_tensor(value, what: str):
    if isinstance(value, tuple) and value and isinstance(value[0], torch.Tensor):
        value = value[0]  # some libraries return (output, bias)
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{what} is a {type(value).__name__}, not a tensor")
    return value


class CollectiveVolume(TorchDispatchMode):
    """Counts the floating-point elements this rank puts into collectives (c10d and functional
    collectives, forward and backward) while active: what it sends, not what it receives."""

    # ops whose first argument is the output buffer; the rank's contribution is the second
    _OUTPUT_FIRST = {"allgather_", "allgather_coalesced_", "allgather_into_tensor_coalesced_", "_allgather_base_",
                     "reduce_scatter_", "_reduce_scatter_base_", "reduce_scatter_tensor_coalesced_", "alltoall_",
                     "alltoall_base_", "gather_", "scatter_"}
    _RECEIVE_ONLY = {"recv_", "recv_any_source_", "barrier", "monitored_barrier_", "wait_tensor",
                     "_wrap_tensor_autograd"}  # not collectives: a wait, a wrapper of a result

    # op -> None (not a collective), or (which argument holds what the rank sends, the op's name)
    _kinds: dict = {}

    def __init__(self):
        super().__init__()
        self.elements = 0
        self.calls: list[str] = []

    @classmethod
    def _kind(cls, func):
        if func not in cls._kinds:
            name = func.name().split("::")[-1].split(".")[0]
            kind = None
            if func.namespace in ("c10d", "_c10d_functional", "c10d_functional") and name not in cls._RECEIVE_ONLY:
                kind = (1 if name in cls._OUTPUT_FIRST else 0, name)
            cls._kinds[func] = kind
        return cls._kinds[func]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if any(t not in (torch.Tensor, torch.nn.Parameter) and not t.__module__.startswith("torch._subclasses")
               for t in types):
            # a tensor subclass (DTensor) first: it desugars into plain ops, collectives included,
            # which come back through this mode (modes otherwise run before subclasses and miss them)
            return NotImplemented
        kind = self._kind(func)
        if kind is not None:
            sent_at, name = kind
            sent = args[sent_at] if len(args) > sent_at else (args[0] if args else None)
            n = sum(t.numel() for t in tree_leaves(sent) if isinstance(t, torch.Tensor) and t.is_floating_point())
            self.elements += n
            self.calls.append(f"{name}({n})")
        return func(*args, **(kwargs or {}))
