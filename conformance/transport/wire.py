"""The wire format between the verdict process and the workers.

Only plain data crosses: ``None``, bools, numbers, strings, bytes, lists/tuples/dicts of those,
and tensors, which travel as ``(dtype name, shape, raw bytes)`` and are rebuilt as plain
``torch.Tensor``s. Decoding uses an unpickler that refuses every global, so a hostile worker
cannot make the verdict process run code, build a tensor subclass or import the candidate.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import torch

_TENSOR = "__tensor__"
_DTYPES = {
    name: getattr(torch, name)
    for name in ("float64", "float32", "bfloat16", "float16", "int64", "int32", "uint8", "bool")
}


class WireError(Exception):
    """A message that is not in the wire format."""


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


def _rebuild(obj: Any) -> Any:
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
        if n == 0:
            return torch.empty(shape, dtype=dtype)
        return torch.frombuffer(bytearray(raw), dtype=dtype).reshape(shape)
    if isinstance(obj, dict):
        return {k: _rebuild(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_rebuild(v) for v in obj]
    return obj


def encode(obj: Any) -> bytes:
    """Tensors become ``(tag, dtype, shape, bytes)`` tuples; every other sequence becomes a list."""
    return pickle.dumps(_flatten(obj), protocol=pickle.HIGHEST_PROTOCOL)


class _NoGlobals(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # noqa: D401
        raise WireError(f"refused to load global {module}.{name}")


def decode(data: bytes) -> Any:
    try:
        return _rebuild(_NoGlobals(io.BytesIO(data)).load())
    except WireError:
        raise
    except Exception as exc:  # malformed pickle: treat as a protocol violation, never a crash
        raise WireError(f"malformed message: {exc}") from None
