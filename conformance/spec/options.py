"""What a user types, read the same way by every front-end (pytest's ``--world-sizes`` and
``--dtypes``, ``tpconform grade``, ``tpconform diff``): world-size lists, dtype lists, TOML files.

Bad input raises :class:`OptionError` (a ``ValueError``) whose message is one line for the user;
each front-end turns it into its own usage error.
"""

from __future__ import annotations

from typing import Any

from tpconform.spec.dtypes import DTYPES

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: tomli is a dependency there (pyproject.toml)
    import tomli as tomllib

DEFAULT_WORLD_SIZES = "1-8"
DEFAULT_DTYPES = ",".join(DTYPES)


class OptionError(ValueError):
    """A value a user gave that cannot be used; the message is one line."""


def parse_world_sizes(text: str) -> list[int]:
    """``"1-8"`` or ``"2,3,4"`` (or both: ``"1,4-6"``) as sorted world sizes, each at least 1."""
    sizes: set[int] = set()
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = part.split("-", 1)
                sizes.update(range(int(lo), int(hi) + 1))
            elif part:
                sizes.add(int(part))
    except ValueError:
        sizes = set()
    if not sizes or min(sizes) < 1:
        raise OptionError(f"--world-sizes={text}: expected e.g. '1-8' or '2,3,4'")
    return sorted(sizes)


def parse_dtypes(text: str) -> list[str]:
    """``"float32,bfloat16"`` as dtype names, each one of :data:`~tpconform.spec.dtypes.DTYPES`."""
    names = [d.strip() for d in text.split(",") if d.strip()]
    bad = [d for d in names if d not in DTYPES]
    if bad or not names:
        raise OptionError(f"--dtypes={text}: unknown dtype(s) {bad}; choose from {', '.join(DTYPES)}")
    return names


def loads_toml(text: str, where: str) -> dict[str, Any]:
    """``text`` parsed as TOML; ``where`` names it in the one-line error."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise OptionError(f"{where}: not valid TOML: {exc}") from None


def read_toml(path: str, where: str = "") -> dict[str, Any]:
    """The TOML file ``path``; ``where`` (default: the path) names it in the one-line error, e.g.
    ``--contract=PATH``."""
    where = where or path
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise OptionError(f"{where}: cannot read it: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise OptionError(f"{where}: not valid TOML: {exc}") from None
