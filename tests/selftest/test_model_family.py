"""The model family in one process (no workers): its error bound (conformance/families/model/bounds.py) on
the dense model itself — the float64 trace the bound is built on is the model the ranks get, and the model
run in the case's dtype stays within it for every drawn config, tied or not (a bound that a correct
implementation can exceed would be a false failure waiting) — and how an HF-style ``tp_plan`` is read
(``tp_plan.styles_of``: layer numbers as ``*``, a name it cannot apply refused with the name)."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from tpconform.families.model import verdict
from tpconform.families.model.bounds import model_trace
from tpconform.families.model.case import ModelCase
from tpconform.families.model.dense import build_model
from tpconform.families.model.plan import PlanCannotExpress
from tpconform.families.model.strategy import model_cases
from tpconform.families.model.tp_plan import reference_tp_plan, styles_of


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(model_cases(world_sizes=(1, 2, 4)))
def test_the_dense_model_in_its_dtype_is_within_the_bound(case):
    t = verdict.make_tensors(case)
    dense = verdict.dense_model(case, t)
    traced = model_trace(case, t.weights, t.tokens, t.targets)
    assert torch.equal(traced["logits"], dense.logits), "the bound's trace is not the dense model"
    model = build_model(case, case.torch_dtype, t.weights)
    logits = model(t.tokens)
    loss = model.loss_fn(logits, t.targets)
    loss.backward()
    b = dense.bounds
    assert ((logits.detach().double() - dense.logits).abs() <= b["logits"]).all()
    assert (loss.detach().double() - dense.loss).abs() <= b["loss"]
    for name, p in model.named_parameters(remove_duplicate=False):
        assert ((p.grad.double() - dense.grads[name]).abs() <= b[f"grad:{name}"]).all(), name


CASE = ModelCase(world_size=2, handed_in="tp_plan", batch=1, seq=2, vocab=5, hidden=4, n_layers=2, n_heads=2,
                 n_kv_heads=2, head_dim=2, ffn=2, tied=True, loss_parallel=True, bias=False, dtype="float32")


def test_a_tp_plan_names_every_layer_by_its_pattern():
    model = build_model(CASE, torch.float32, verdict.make_tensors(CASE).weights)
    styles = styles_of(model, reference_tp_plan(CASE))
    assert {"layers.0.attention.wq", "layers.1.feed_forward.w2", "tok_embeddings", "output"} <= set(styles)
    assert len(styles) == 2 + 7 * CASE.n_layers
    assert styles["output"].use_local_output is False  # loss parallel: the logits stay a vocab-sharded DTensor


@pytest.mark.parametrize("tp_plan,says", [({"lm_head": "colwise_rep"}, "'lm_head' matches no module"),
                                          ({"output": "colwise_everything"}, "unknown style 'colwise_everything'"),
                                          ({"norm": "sequence_parallel"}, "no sequence parallelism"),
                                          (["output"], "not a dict")])
def test_a_tp_plan_the_suite_cannot_apply_is_refused_with_the_name(tp_plan, says):
    model = build_model(CASE, torch.float32, verdict.make_tensors(CASE).weights)
    with pytest.raises(PlanCannotExpress, match=says):
        styles_of(model, tp_plan)
