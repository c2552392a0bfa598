"""Every rank's stack dump (faulthandler's text), cut to what a person reads in a hang or crash report:
the threads of the code under test, not the worker's lifeline thread or its process start-up; a rank
idle in the worker loop in one line; ranks with the same stack folded (``--- ranks 0-3 stack:``)."""

from __future__ import annotations

import re

from tpconform.spec.violations import fold_ranks

_THREAD_ID = re.compile(r"^(Current thread|Thread) 0x[0-9a-f]+", re.MULTILINE)
_WORKER_LOOP = "transport/worker.py"  # the worker's message loop (tpconform.transport.worker.main)
_LIFELINE = "transport/sandbox.py"  # the lifeline thread (tpconform.transport.sandbox._watch)
_WAITING = "multiprocessing/connection.py"  # a read of the verdict's pipe
IDLE = "idle in the worker loop (waiting for the verdict's next message)"


def _frames(block: str) -> list[str]:
    return [line for line in block.splitlines() if line.lstrip().startswith("File ")]


def brief(stack: str) -> str:
    """One rank's dump without the lifeline thread and the frames below the worker loop; ``IDLE``
    when all that is left is the loop waiting for a message."""
    kept = []
    for block in re.split(r"\n\s*\n", _THREAD_ID.sub(r"\1", stack.strip())):
        lines = block.splitlines()
        start = next((i for i, line in enumerate(lines) if line.startswith(("Thread", "Current thread"))), len(lines))
        if start:  # what precedes the first thread (e.g. "(no answer to SIGUSR1; its watchdog's dump ...)")
            kept.append("\n".join(lines[:start]))
            lines = lines[start:]
        frames = _frames("\n".join(lines))
        if not lines or frames and any(_LIFELINE in f and "_watch" in f for f in frames):
            continue
        loop = next((i for i, line in enumerate(lines) if _WORKER_LOOP in line and " in main" in line), None)
        if loop is not None:
            above = [line for line in lines[1:loop] if line.lstrip().startswith("File ")]
            if all(_WAITING in line for line in above):
                kept.append(IDLE)
                continue
            lines = lines[: loop + 1]
        kept.append("\n".join(lines))
    if kept.count(IDLE) == len(kept) and kept:
        return IDLE
    return "\n\n".join(k for k in kept if k != IDLE or len(kept) == 1)


def folded(per_rank: dict[int, str]) -> str:
    """``--- rank N stack:`` sections, ranks whose brief stacks are the same in one section; a rank
    whose entry starts with ``:`` (a death: ``: was killed by SIGABRT``) is one line."""
    items = []
    for r, text in sorted(per_rank.items()):
        if text.startswith(":"):
            items.append((r, f"rank {r}{text}"))
            continue
        stack = brief(text)
        items.append((r, f"rank {r}: {IDLE}" if stack == IDLE else f"rank {r} stack:\n{stack}"))
    return "\n".join(f"--- {line}" for line in fold_ranks(items))
