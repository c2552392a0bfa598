"""The grading's parallelism check (``really_tensor_parallel``): measured outside the candidate's
processes, so a layer that is not tensor parallel cannot forge its way to the points.

In the bubblewrap sandbox, at world sizes 1-2 in float32 with one random example a variant (plus the
anchors, among them the wide parallelism case), a correct control keeps full marks and two layers that
forge the in-process collective counters lose the check's points (and the second, the training step's):

- ``weight_gather_forged.py`` all-gathers the weight on every call (hidden from the counter): the
  kernel's loopback byte count is far above the allowance;
- ``private_master.py`` keeps a private full copy and never exchanges partial results: the output after
  an update each rank alone is sent is wrong (the information bound; the training step fails too).

``private_master_resync.py`` (a private copy re-gathered only when the shards change: one weight
gather an example, the least such a layer can send) is measured by ``benchmarks/parallelism_bytes.py``.
Its re-sync moved to channels the loopback does not count — files in ``/dev/shm``
(``shm_resync.py``), abstract Unix sockets (``unix_socket_resync.py``), the other ranks' memory through
``/proc/PID/mem`` (``proc_mem_resync.py``) — scored the check before the ranks were walled apart
(``tpconform.transport.rank_walls``); now each re-sync fails and the stale copy loses it like
``private_master.py`` (the walls channel by channel: ``test_rank_walls.py``).
Skipped where bwrap cannot run. The unsandboxed half (the check is not available: no points either
way) and the harness's private delta are checked without processes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from tpconform.grading import bwrap
from tpconform.transport import rank_walls

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "selftest", "fixtures", "parallelism")
CONTROL = os.path.join(ROOT, "tests", "selftest", "fixtures", "grading", "reference_copy.py")
OPTIONS = ["--examples=1", "--timeout=20", "--time-limit=300", "--seed=0", "--jobs=2", "--no-progress"]
# world sizes 1-2, float32, the linear layers alone: the parallelism case at 2 ranks, few others
CONTRACT = """name = "parallelism check"
families = ["linear"]
world_sizes = [1, 2]
dtypes = ["float32"]
bias = "with"
input_ranks = [2]
[beyond]
examples = 0
"""
CHECK = "really_tensor_parallel"
# private_master_resync.py (one hidden weight gather an example) is graded by benchmarks/parallelism_bytes.py
# the re-sync of private_master_resync.py through channels that bypass the loopback (closed by the
# rank walls, tpconform.transport.rank_walls): each loses the check
SIDE_CHANNELS = ("shm_resync", "unix_socket_resync", "proc_mem_resync")
NOT_PARALLEL = ("weight_gather_forged", "private_master", *SIDE_CHANNELS)


def _grade(subs: str, out: str, *extra: str) -> dict:
    r = subprocess.run([sys.executable, "-m", "tpconform", "grade", subs, "--out", out, *OPTIONS, *extra], cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True, text=True, timeout=600, check=False)
    assert os.path.exists(os.path.join(out, "report.json")), r.stdout[-3000:] + r.stderr[-3000:]
    with open(os.path.join(out, "report.json")) as fh:
        return {s["name"]: s for s in json.load(fh)["submissions"]}


@pytest.mark.skipif(bwrap.unavailable() is not None, reason=f"no sandbox here: {bwrap.unavailable()}")
@pytest.mark.skipif(rank_walls.unavailable() is not None,
                    reason=f"the check is n/a without rank walls: {rank_walls.unavailable()}")
def test_only_a_really_parallel_layer_earns_the_check(tmp_path):
    subs = tmp_path / "subs"
    os.makedirs(subs)
    shutil.copy(CONTROL, subs / "control.py")
    for name in NOT_PARALLEL:
        shutil.copy(os.path.join(FIXTURES, f"{name}.py"), subs / f"{name}.py")
    contract = tmp_path / "contract.toml"
    contract.write_text(CONTRACT)
    got = _grade(str(subs), str(tmp_path / "out"), f"--contract={contract}")
    control = got["control"]
    assert control["total"] == control["max"], {p: v["reason"] for p, v in control["properties"].items() if v["reason"]}
    assert control["properties"][CHECK]["verdict"] == "pass" and control["properties"][CHECK]["max"] > 0
    for name in NOT_PARALLEL:
        props = got[name]["properties"]
        assert props[CHECK]["score"] == 0, (name, props[CHECK])
        # the counted collectives were forged: the self-reported communication facts pass
        assert props["communicates_activations_not_weights"]["verdict"] == "pass", (name, props)
        assert props["communicates_what_the_other_ranks_need"]["verdict"] == "pass", (name, props)
        lost = {p for p, v in props.items() if v["score"] < v["max"]}
        # a private copy that is never re-synced is also stale after the step, a reload, a conversion and a
        # mixed-precision step
        stale = {"training_step_matches_the_dense_layer", "a_state_dict_reloads_the_trained_layer",
                 "a_converted_layer_matches_the_dense_layer", "a_mixed_precision_step_matches_the_dense_layer"}
        allowed = {CHECK} | stale if name == "private_master" or name in SIDE_CHANNELS else {CHECK}
        assert CHECK in lost and lost <= allowed, (name, {p: props[p]["reason"] for p in lost})
    gather = got["weight_gather_forged"]["properties"][CHECK]["reason"]
    assert "bytes over the loopback" in gather, gather
    assert "a delta only it was sent" in got["private_master"]["properties"][CHECK]["reason"]


def test_unsandboxed_the_check_is_not_available_and_worth_nothing():
    from tpconform.grading.catalog import PRIMARY_VARIANTS
    from tpconform.grading.scoring import load_weights, score_submission

    weights = load_weights()
    assert weights.points[CHECK] > 0 and CHECK not in weights.self_reported
    why = "not available: graded without the sandbox (--unsandboxed)"
    cells = [{"property": p, "variant": v, "verdict": "n/a" if p == CHECK else "pass", "examples": 1,
              **({"reason": why} if p == CHECK else {})}
             for p in weights.points for v in PRIMARY_VARIANTS]
    from tpconform.impls.protocol import Capabilities

    result = {"status": "done", "describe": {"name": "x", "capabilities": Capabilities().as_dict()}, "cells": cells,
              "failures": []}
    scored = score_submission(result, weights)
    assert scored["properties"][CHECK]["verdict"] == "n/a" and scored["properties"][CHECK]["max"] == 0
    assert scored["total"] == scored["max"] == weights.total - weights.points[CHECK]


def test_a_rank_is_sent_only_its_own_slice_of_the_update():
    """The information bound rests on this: no rank's message holds another rank's delta."""
    from tpconform.families.linear.case import LayerCase
    from tpconform.families.linear.run import sliced_messages
    from tpconform.families.linear.tensors import make_tensors

    case = LayerCase(kind="column", world_size=2, in_features=4, out_features=6, batch_shape=(3,),
                     dtype="float32", bias=True, gather_output=True)
    tensors = make_tensors(case, update=True)
    shards = [{"weight_shard": torch.zeros(3, 4)}, {"weight_shard": torch.zeros(3, 4)}]
    messages = sliced_messages(case, {"cmd": "run"}, tensors, shards)
    for r in (0, 1):
        u = messages[r]["data"]["update"]
        assert u["delta_sliced"] and torch.equal(u["delta_weight"], tensors.update.delta_weight[3 * r:3 * r + 3])
        assert torch.equal(u["delta_bias"], tensors.update.delta_bias[3 * r:3 * r + 3])
        assert torch.equal(messages[r]["data"]["x"], tensors.x)  # the column input is whole


def test_the_loopback_count_is_private_only_in_a_namespace_of_its_own(tmp_path):
    from tpconform.transport import loopback

    text = ("Inter-|   Receive |  Transmit\n face |bytes    packets|bytes    packets\n"
            "    lo:  100 2 0 0 0 0 0 0  100 2 0 0 0 0 0 0\n")
    only_lo = tmp_path / "dev"
    only_lo.write_text(text)
    shared = tmp_path / "dev2"
    shared.write_text(text + "  eth0: 5 1 0 0 0 0 0 0 7 1 0 0 0 0 0 0\n")
    counter = loopback.private_counter(str(only_lo))
    assert counter is not None and counter() == 100
    assert loopback.private_counter(str(shared)) is None
    assert loopback.private_counter(str(tmp_path / "missing")) is None
