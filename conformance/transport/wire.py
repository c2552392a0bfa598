"""The wire format between the verdict process and the workers.

Only plain data crosses: ``None``, bools, numbers, strings, bytes, lists/tuples/dicts of those,
and tensors, which travel as ``(dtype name, shape, raw bytes)`` and are rebuilt as plain
``torch.Tensor``s. Decoding uses an unpickler that refuses every global, so a hostile worker
cannot make the verdict process run code, build a tensor subclass or import the candidate.

What a message decodes to is bounded before it is built: pickle's memo lets a small message refer to
one object many times (one 1 MiB tensor 1,024 times is a ~1 MiB message), and rebuilding copies every
reference, so :func:`decode` counts the bytes it is about to build (:data:`MAX_DECODED_BYTES`) and
refuses the message before the piece that would pass the cap is allocated.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import torch
from tpconform.spec.dtypes import DTYPES

_TENSOR = "__tensor__"
_DTYPES = {
    name: getattr(torch, name)
    for name in (*DTYPES, "int64", "int32", "uint8", "bool")  # the spec's dtypes and the index/mask ones
}


MAX_DECODED_BYTES = 256 * 1024**2  # what one message may decode to (as the 256 MiB message cap, contract.py)
MAX_DECODED_ITEMS = 1_000_000  # values one message may hold, leaves included (its data travels in tensors)
_OBJECT_BYTES = 64  # counted per container or tensor built, besides its slots (8 bytes each) or its data


class WireError(Exception):
    """A message that is not in the wire format."""


class _Budget:
    """The bytes a message's rebuilding has allocated so far; refuses a piece past ``limit``."""

    __slots__ = ("limit", "used", "items")

    def __init__(self, limit: int) -> None:
        self.limit, self.used, self.items = limit, 0, 0

    def visit(self) -> None:
        self.items += 1
        if self.items > MAX_DECODED_ITEMS:
            raise WireError(f"the message would decode to more than {MAX_DECODED_ITEMS:,} values (it refers to the "
                            "same data many times); refused before it was built")

    def take(self, n: int) -> None:
        self.used += n
        if self.used > self.limit:
            raise WireError(f"the message would decode to more than {self.limit >> 20} MiB (it refers to the same "
                            "data many times); refused before it was built")


def _flatten(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        t = obj.detach()
        if type(t) is not torch.Tensor:
            t = t.as_subclass(torch.Tensor)
        name = str(t.dtype).removeprefix("torch.")
        if name not in _DTYPES:
            raise WireError(f"tensor dtype {name} cannot cross the wire")
        flat = torch.empty(t.numel(), dtype=t.dtype, device="cpu").copy_(t.cpu().reshape(-1))  # dense, stride 1
        raw = flat.view(torch.uint8).numpy().tobytes() if t.numel() else b""
        return (_TENSOR, name, list(t.shape), raw)
    if isinstance(obj, dict):
        return {str(k): _flatten(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_flatten(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str, bytes)):
        return obj
    raise WireError(f"{type(obj).__name__} cannot cross the wire")


def _rebuild(obj: Any, budget: _Budget) -> Any:
    budget.visit()
    if isinstance(obj, tuple) and len(obj) == 4 and obj[0] == _TENSOR:
        _, name, shape, raw = obj
        if name not in _DTYPES or not isinstance(raw, bytes):
            raise WireError(f"bad tensor header {name!r}")
        dtype = _DTYPES[name]
        shape = [int(s) for s in shape]
        n = 1
        for s in shape:
            n *= s
        itemsize = torch.empty((), dtype=dtype).element_size()
        if len(raw) != n * itemsize:
            raise WireError("tensor byte count does not match its shape")
        budget.take(_OBJECT_BYTES + len(raw))  # before the copy below: a shared reference is copied again
        if n == 0:
            return torch.empty(shape, dtype=dtype)
        return torch.frombuffer(bytearray(raw), dtype=dtype).reshape(shape)
    if isinstance(obj, dict):
        budget.take(_OBJECT_BYTES + 16 * len(obj))
        return {k: _rebuild(v, budget) for k, v in obj.items()}
    if isinstance(obj, list):
        budget.take(_OBJECT_BYTES + 8 * len(obj))
        return [_rebuild(v, budget) for v in obj]
    return obj


def encode(obj: Any) -> bytes:
    """Tensors become ``(tag, dtype, shape, bytes)`` tuples; every other sequence becomes a list."""
    return pickle.dumps(_flatten(obj), protocol=pickle.HIGHEST_PROTOCOL)


class _NoGlobals(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # noqa: D401
        raise WireError(f"refused to load global {module}.{name}")


def decode(data: bytes, max_decoded: int = MAX_DECODED_BYTES) -> Any:
    """The message ``data`` rebuilt; :class:`WireError` for anything outside the wire format, or a
    message that would decode to more than ``max_decoded`` bytes (refused before it is built)."""
    try:
        return _rebuild(_NoGlobals(io.BytesIO(data)).load(), _Budget(max_decoded))
    except WireError:
        raise
    except Exception as exc:  # malformed pickle: treat as a protocol violation, never a crash
        raise WireError(f"malformed message: {exc}") from None
