"""The subgroups family's case: a :class:`~tpconform.families.linear.case.LayerCase` with ``tp_size`` set.

``world_size = tp_size × groups``: the workers split the world into TP groups of ``tp_size`` consecutive
ranks, and each group runs its own example of the case (``verdict.group_case``: its own seed). The case
has no field of its own, so its type is the layer case's: ``tp_size > 0`` is what makes a layer case
this family's (``LayerCase.tp_groups > 1``: ``SubgroupsFamily.claims``), and its bare token replays as sub-groups.
"""

from __future__ import annotations

from tpconform.families.linear.case import LayerCase

SubgroupsCase = LayerCase

