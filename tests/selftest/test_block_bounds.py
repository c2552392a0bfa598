"""The block family's error bound (conformance/families/block/bounds.py) on the dense block itself: the
float64 trace the bound is built on is the block the ranks get, and the block run in the case's dtype
(one process, no parallelism: the bound's roundings without the all-reduce's) stays within it for every
drawn config, every dtype, and so do one optimizer step (SGD, AdamW) and the second pass after it — a bound
that a correct implementation can exceed would be a false failure waiting."""

import torch
from hypothesis import HealthCheck, given, settings
from tpconform.families.block import verdict
from tpconform.families.block.bounds import trace
from tpconform.families.block.case import STEP
from tpconform.families.block.dense import build_block, take_step
from tpconform.families.block.strategy import block_cases


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(block_cases(world_sizes=(1, 2, 4)))
def test_the_dense_block_in_its_dtype_is_within_the_bound(case):
    t = verdict.make_tensors(case)
    dense = verdict.dense_block(case, t, step=True)
    traced = trace(t.weights, case, t.x, t.grad_out)
    assert torch.equal(traced["value"]["out"], dense.output), "the bound's trace is not the dense block"
    block = build_block(case, case.torch_dtype, t.weights)
    x = t.x.clone().requires_grad_(True)
    y = block(x)
    y.backward(t.grad_out)
    b = dense.bounds
    assert ((y.detach().double() - dense.output).abs() <= b["output"]).all()
    assert ((x.grad.double() - dense.input_grad).abs() <= b["input_grad"]).all()
    for name, p in block.named_parameters():
        assert ((p.grad.double() - dense.grads[name]).abs() <= b[f"grad:{name}"]).all(), name
    take_step(block.parameters(), case.optimizer, STEP[case.optimizer])
    after = dense.after_step
    assert after is not None and dense.weights is not None
    x = t.x.clone().requires_grad_(True)
    y = block(x)
    y.backward(t.grad_out)
    a = after.bounds
    assert ((y.detach().double() - after.output).abs() <= a["output"]).all(), "output after the step"
    assert ((x.grad.double() - after.input_grad).abs() <= a["input_grad"]).all(), "input grad after the step"
    for name, p in block.named_parameters():
        assert ((p.detach().double() - dense.weights[name]).abs() <= a[f"weight:{name}"]).all(), f"{name} stepped"
        assert ((p.grad.double() - after.grads[name]).abs() <= a[f"grad:{name}"]).all(), f"{name} grad after the step"
