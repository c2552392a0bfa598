"""The model family's error bound (conformance/families/model/bounds.py) on the dense model itself: the
float64 trace the bound is built on is the model the ranks get, and the model run in the case's dtype
(one process, no parallelism) stays within it for every drawn config, tied or not — a bound that a correct
implementation can exceed would be a false failure waiting."""

import torch
from hypothesis import HealthCheck, given, settings
from tpconform.families.model import verdict
from tpconform.families.model.bounds import model_trace
from tpconform.families.model.dense import build_model
from tpconform.families.model.strategy import model_cases


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
