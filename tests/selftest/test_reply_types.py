"""A rank's reply is type-checked before the verdict reads it (``tpconform.spec.results.malformed``): a candidate
can forge any reply, and a wrong type must be a clean failure, never a crash of the verdict. The per-micro-batch
lists are lists of tensors (or ``None`` where the impl gave none); a short list reads as the rest missing."""

import pytest
import torch
from tpconform.spec.results import malformed


@pytest.mark.parametrize("value, says", [
    ([1.0, 2.0], "usage_outputs is not a list of tensors"),
    ("outputs", "usage_outputs is not a list of tensors"),
    (torch.zeros(2, 3), "usage_outputs is not a list of tensors"),
])
def test_a_forged_per_micro_batch_list_is_malformed(value, says):
    assert malformed({"usage_outputs": value}) == says


def test_a_list_of_tensors_and_nones_is_well_formed():
    assert malformed({"usage_outputs": [torch.zeros(2), None], "usage_input_grads": [],
                      "usage_in_order_input_grads": None}) is None


def test_a_short_list_reads_as_the_rest_missing():
    from types import SimpleNamespace

    from tpconform.families.linear.results import RankResult
    from tpconform.families.linear.verdict import _listed

    ev = SimpleNamespace(ranks=[RankResult.from_wire({"usage_outputs": [torch.ones(1)]})])
    listed = _listed(ev, 0, "usage_outputs", 3)
    assert len(listed) == 3 and torch.equal(listed[0], torch.ones(1)) and listed[1:] == [None, None]
