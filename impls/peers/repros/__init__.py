"""Minimal standalone reproductions of the peers' known deviations (each peer's ``<name>.toml``, its ``repro``).

Each module is the body of a bug report's script: its own imports, ``WORLD_SIZE`` and
``check(rank, world_size) -> list[str]``, run on every rank of a Gloo group of ``WORLD_SIZE``
processes, returning the lines that show the deviation on that rank ("expected ..., got ...";
empty when it does not show). The truth is computed in float64 / with ``nn.Linear`` inside
``check``. ``python -m tpconform report-deviation ID`` appends the process-group harness
(``tpconform.cli.deviation_report.HARNESS``) and prints the whole, self-contained script. These
modules import the peer libraries: they are run as scripts in their own processes, never imported
by the suite.
"""
