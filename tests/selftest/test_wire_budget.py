"""A message is bounded by what it decodes to, not only by its length: pickle's memo lets a ~1 MiB
message refer to one 1 MiB tensor 1,024 times (or nest one list in itself a thousand times over), and
``wire.decode`` refuses it before building the copies."""

import pickle
import time

import pytest
import torch
from tpconform.transport import wire


def test_a_tensor_referred_to_many_times_is_refused_before_it_is_built():
    t = ("__tensor__", "float32", [262144], bytes(1 << 20))  # one 1 MiB tensor
    msg = pickle.dumps({"ok": True, "out": [t] * 1024}, protocol=pickle.HIGHEST_PROTOCOL)
    assert len(msg) < 2 << 20
    with pytest.raises(wire.WireError, match="more than 256 MiB"):
        wire.decode(msg)


def test_nested_shared_lists_are_refused_quickly():
    inner = [0] * 1000
    msg = pickle.dumps([[inner] * 1000] * 1000)  # 6 kB, 10**9 values rebuilt
    started = time.monotonic()
    with pytest.raises(wire.WireError, match="values"):
        wire.decode(msg)
    assert time.monotonic() - started < 10


def test_ordinary_messages_still_cross():
    reply = {"ok": True, "out": [torch.ones(1024, 256), torch.zeros(0)], "shapes": [[1, 2]] * 8, "text": "x" * 5000}
    back = wire.decode(wire.encode(reply))
    assert torch.equal(back["out"][0], reply["out"][0]) and back["shapes"] == reply["shapes"]
    big = torch.ones(32 << 20, dtype=torch.float32)  # 128 MiB once: under the cap
    assert wire.decode(wire.encode({"t": big}))["t"].numel() == big.numel()
