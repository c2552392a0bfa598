"""The resource limits of one submission: set by the host (``isolation``), applied by the verdict process
inside the sandbox before any worker starts (``verdict``). Shared by both sides; no dependencies."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    seconds: float = 900.0  # wall clock for the whole submission
    memory_mb: int = 4096  # resident memory per worker, with the processes it starts (tpconform.transport.memory_watch)
    file_mb: int = 64  # largest file a process may write
    sandbox_memory_mb: int | None = None  # every process of the submission together, with its tmpfs files (None: no bound)

    def apply(self) -> None:
        """Set this process's limits (inherited by every process it starts). Memory is not one of
        them: an address-space limit fails the CUDA build of torch, which maps ~3.1 GB before any
        work; the workers' resident memory is bounded from outside them (``GroupPool(memory_limit)``)."""
        import resource

        def cap(which, value):
            _, hard = resource.getrlimit(which)
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(which, (value, value))

        cap(resource.RLIMIT_CPU, int(self.seconds) + 5)
        cap(resource.RLIMIT_FSIZE, self.file_mb * 2**20)
        cap(resource.RLIMIT_CORE, 0)
