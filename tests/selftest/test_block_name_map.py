"""A builder's name map (``families/block/name_map.py``), read as the block worker reads it: every sharding
form lands where it says in the dense parameter, a fused parameter (Megatron's ``linear_qkv``: per query group
``[q heads; k; v]``) is cut back into each dense parameter's part, and a map that cannot be read says why."""

import torch
from torch import nn
from tpconform.families.block.name_map import Part, their_parameters, where_of
from tpconform.families.block.worker import _parameters


def test_each_sharding_form_says_where_the_part_sits():
    shape = torch.Size((6, 4))
    assert where_of(None, shape, 1, 2) == ([[0, 6], [0, 4]], None)
    assert where_of(0, shape, 1, 2) == ([[3, 6], [0, 4]], None)
    assert where_of((1, 2, 4), shape, 0, 2) == ([[0, 6], [2, 4]], None)
    assert where_of((0, 2, 5, [(4, 5), (0, 2)]), shape, 0, 2) == ([[2, 5], [0, 4]], Part(0, ((4, 5), (0, 2))))


def test_a_fused_parameter_is_cut_back_into_each_dense_part():
    """Rank 0 of 2, 2 kv heads of 1 row, 2 query heads a group: its qkv rows are [q0 q1 k0 v0]."""
    module = nn.Module()
    module.qkv = nn.Parameter(torch.tensor([[10.0], [11.0], [20.0], [30.0]]))
    module.qkv.grad = -module.qkv.detach().clone()
    name_map = {"wq": ("qkv", (0, 0, 2, [(0, 2)])), "wk": ("qkv", (0, 0, 1, [(2, 3)])),
                "wv": ("qkv", (0, 0, 1, [(3, 4)]))}
    shapes = {"wq": torch.Size((4, 1)), "wk": torch.Size((2, 1)), "wv": torch.Size((2, 1))}
    got = _parameters(their_parameters(module, name_map, shapes, 0, 2))
    assert got["wq"]["value"].tolist() == [[10.0], [11.0]] and got["wq"]["where"] == [[0, 2], [0, 1]]
    assert got["wk"]["value"].tolist() == [[20.0]] and got["wk"]["grad"].tolist() == [[-20.0]]
    assert got["wv"]["value"].tolist() == [[30.0]] and got["wv"]["where"] == [[0, 1], [0, 1]]


def test_ranges_in_their_order_and_an_empty_part():
    """Ranges are concatenated in the order given; a rank holding none of a dense parameter says (0, s, s, [])."""
    t = torch.arange(6.0)
    assert Part(0, ((4, 6), (0, 1))).of(t).tolist() == [4.0, 5.0, 0.0]
    where, part = where_of((0, 3, 3, []), torch.Size((8,)), 1, 4)
    assert where == [[3, 3]] and part is not None and part.of(t).numel() == 0


def test_a_map_that_cannot_be_read_says_why():
    shape = torch.Size((4, 2))
    assert "hold 3 rows, not the 2" in where_of((0, 0, 2, [(0, 3)]), shape, 0, 2)[0]
    assert "not a list of (start, stop) pairs" in where_of((0, 0, 2, [(2, 1)]), shape, 0, 2)[0]
    assert "none of None" in where_of((0, 1), shape, 0, 2)[0]
    module = nn.Module()
    module.qkv = nn.Parameter(torch.zeros(2, 2))
    out = their_parameters(module, {"wq": ("qkv", (0, 0, 3, [(0, 3)]))}, {"wq": shape}, 0, 2)
    assert "their qkv has 2 rows along dim 0" in out["wq"][1]


def test_parts_that_leave_rows_out_are_a_violation():
    """A builder may not dodge the parameter checks by naming parts that hold nothing: the ranks' parts
    together must hold every element of each dense parameter."""
    from tpconform.families.block.verdict import _parameters

    dense = {"w": torch.arange(8.0).reshape(4, 2)}
    bounds = {"w": torch.full((4, 2), 1e-6)}

    def reply(rows):
        a, b = rows
        return {"parameters": {"w": {"grad": dense["w"][a:b].clone(), "where": [[a, b], [0, 2]]}}}

    assert _parameters("p", [reply((0, 2)), reply((2, 4))], dense, bounds, "grad", "grad") == []
    out = _parameters("p", [reply((0, 0)), reply((0, 0))], dense, bounds, "grad", "grad")
    assert len(out) == 1 and "no rank holds 8 element(s) of w (the first at [0, 0])" in out[0].message
    out = _parameters("p", [reply((0, 1)), reply((2, 4))], dense, bounds, "grad", "grad")
    assert len(out) == 1 and "no rank holds 2 element(s) of w (the first at [1, 0])" in out[0].message


def test_a_model_builders_fused_parameter_is_no_tie_and_each_part_has_its_storage():
    """The model family reads a builder's map alike (``build_tp_model``): the dense parameters a fused one holds
    are each their own (not tied to the first), each with its share of the storage; a whole parameter named
    twice (tied) is the first name's, its storage counted once."""
    from tpconform.families.model.worker import _built_held, _built_parameters

    module = nn.Module()
    module.qkv = nn.Parameter(torch.arange(4.0).reshape(4, 1))
    module.emb = nn.Parameter(torch.ones(3, 1))
    module.head = module.emb  # tied
    for p in (module.qkv, module.emb):
        p.grad = torch.zeros_like(p)
    name_map = {"wq": ("qkv", (0, 0, 2, [(0, 2)])), "wk": ("qkv", (0, 0, 1, [(2, 3)])),
                "wv": ("qkv", (0, 0, 1, [(3, 4)])), "tok": ("emb", None), "out": ("head", None)}
    shapes = {"tok": torch.Size((3, 1)), "wq": torch.Size((4, 1)), "wk": torch.Size((2, 1)), "wv": torch.Size((2, 1)),
              "out": torch.Size((3, 1))}
    params = their_parameters(module, name_map, shapes, 0, 2)
    got = _built_parameters(params, shapes)
    assert {n: got[n]["alias"] for n in shapes} == {"tok": "tok", "wq": "wq", "wk": "wk", "wv": "wv", "out": "tok"}
    assert _built_held(params, shapes) == {"tok": 3, "wq": 2, "wk": 1, "wv": 1}
