"""The subgroups family's seeded bugs: what its properties must catch, each for the right reason
(``tests/selftest/test_extensions.py``). Metadata only: a bug's code is its module, imported by workers alone."""

from tpconform.impls.seeded import SeededBug

BUGS: tuple[SeededBug, ...] = (
    SeededBug("bug-collectives-on-world", "tpconform.families.subgroups.bugs.collectives_on_world",
              "the all-reduce runs on the default (WORLD) group, not the TP group it was given",
              "output_matches_the_dense_layer", "subgroups/row-full-input"),
)
