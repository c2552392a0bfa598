"""The plain-data form every family's case type shares: fields in, one-line token out, and back."""

from __future__ import annotations

import typing
from dataclasses import fields

if typing.TYPE_CHECKING:
    import torch


class PlainCase:
    """Mixin for a frozen dataclass case of ints, floats, bools, strs and tuples of ints."""

    dtype: str

    @property
    def torch_dtype(self) -> torch.dtype:
        import torch  # lazy: a case is plain data, read by the grading host, which imports no torch

        return getattr(torch, self.dtype)

    def as_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict):
        hints = typing.get_type_hints(cls)
        return cls(**{k: tuple(v) if str(hints.get(k, "")).startswith("tuple") else v for k, v in d.items()})

    def token(self) -> str:
        """Every field as ``name=value``, comma-separated; tuples as ``2x3`` (``-``: empty), bools as 0/1."""
        parts = []
        for k, v in self.as_dict().items():
            if isinstance(v, list):
                v = "x".join(map(str, v)) or "-"
            elif isinstance(v, bool):
                v = int(v)
            parts.append(f"{k}={v}")
        return ",".join(parts)

    @classmethod
    def from_token(cls, token: str):
        raw = dict(item.split("=", 1) for item in token.strip().split(","))
        hints = typing.get_type_hints(cls)
        kw: dict = {}
        for f in fields(cls):  # type: ignore[arg-type]
            if f.name not in raw:
                continue
            v, hint = raw[f.name], str(hints[f.name])
            if hint.startswith("tuple"):
                kw[f.name] = tuple(int(s) for s in v.split("x")) if v not in ("-", "") else ()
            elif hints[f.name] is bool:
                kw[f.name] = bool(int(v))
            elif hints[f.name] is int:
                kw[f.name] = int(v)
            elif hints[f.name] is float:
                kw[f.name] = float(v)
            else:
                kw[f.name] = v
        return cls(**kw)


def for_workers(case) -> dict:
    """``case`` as a worker is sent it: every field but its ``seed``. A rank learns only what its rank may
    know: from the seed it could regenerate every tensor of the example (the whole input of a sliced
    variant among them) instead of communicating. Replay lines are written by the verdict, which keeps it."""
    d = case.as_dict()
    d.pop("seed", None)
    return d
