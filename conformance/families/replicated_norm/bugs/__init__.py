"""The replicated_norm family's seeded bugs: ``bugs.toml`` lists them (metadata only), one module each beside it."""

from tpconform.families.folders import seeded_bugs

BUGS = seeded_bugs(__name__)
