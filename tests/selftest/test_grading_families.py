"""Grading scores the families the grader names (here every one, by a weights file's ``[families]
scored``): a submission offering the reference's families gets their points, a bug in one family loses
that family's property (with a minimal example and a replay line of its own family), and a submission
offering none scores 0 of their points out of the same maximum (it never shrinks with what is offered)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
from tpconform.grading import bwrap
from tpconform.grading.catalog import FAMILY_OF

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNSANDBOXED = [] if bwrap.unavailable() is None else ["--unsandboxed"]


def _package(folder, name: str, base: str) -> None:
    pkg = folder / name
    (pkg / "layers").mkdir(parents=True)
    (pkg / "tpconform.toml").write_text('impl = "layers.adapter:Impl"\n')
    (pkg / "layers" / "__init__.py").write_text("")
    (pkg / "layers" / "adapter.py").write_text(textwrap.dedent(f"""
        from {base} import Impl as Base


        class Impl(Base):
            name = "{name}"
    """))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    subs = tmp_path_factory.mktemp("families")
    _package(subs, "all_families", "tpconform.impls.reference")  # the reference's layers: every family offered
    (subs / "all_families" / "layers" / "adapter.py").write_text(
        "from tpconform.impls.reference import ReferenceImpl\n\n\nclass Impl(ReferenceImpl):\n    name = 'all-families'\n")
    _package(subs, "ce_local_max", "tpconform.families.cross_entropy.bugs.ce_local_max")
    (subs / "only_layers.py").write_text(open(os.path.join(ROOT, "tests/selftest/fixtures/simple_module_good.py")).read())
    out = subs / "out"
    weights = tmp_path_factory.mktemp("weights") / "every_family.toml"
    from tpconform.families.registry import families

    weights.write_text(f"[families]\nscored = {sorted(families())!r}\n".replace("'", '"'))
    r = subprocess.run([sys.executable, "-m", "tpconform", "grade", str(subs), "--out", str(out),
                        "--world-sizes=1-2", "--dtypes=float32,bfloat16", "--examples=6", f"--weights={weights}",
                        *UNSANDBOXED],
                       cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return {s["name"]: s for s in json.loads((out / "report.json").read_text())["submissions"]}


FAMILY_PROPS = ("cross_entropy_loss_matches_the_dense_loss", "primitive_forward_matches_its_dense_meaning",
                "mlp_output_matches_the_dense_mlp", "embedding_output_matches_the_dense_lookup",
                "merged_column_matches_the_dense_layer", "sequence_parallel_output_matches_the_dense_layer")


def test_a_submission_offering_every_family_gets_their_points(report):
    sub = report["all_families"]
    assert sub["total"] == sub["max"], {p: v["reason"] for p, v in sub["properties"].items() if v["score"] < v["max"]}
    for prop in FAMILY_PROPS:
        assert sub["properties"][prop]["max"] > 0 and sub["properties"][prop]["verdict"] == "pass", prop


def test_a_bug_in_one_family_costs_that_familys_property_with_its_own_replay_line(report):
    sub = report["ce_local_max"]
    loss = sub["properties"]["cross_entropy_loss_matches_the_dense_loss"]
    assert loss["verdict"] == "fail" and loss["score"] == 0 and loss["max"] > 0, loss
    cell = loss["variants"]["cross_entropy/any"]
    assert "python -m tpconform replay" in cell["failure"] and "cross_entropy:" in cell["failure"], cell["failure"]
    assert "its own max" in cell["failure"]  # the likely cause
    lost = {p for p, v in sub["properties"].items() if v["score"] < v["max"]}
    assert lost and all(p.startswith("cross_entropy_") for p in lost), lost  # nothing outside its family


def test_a_submission_offering_no_family_scores_none_of_their_points_out_of_the_same_maximum(report):
    sub, full = report["only_layers"], report["all_families"]
    assert sub["max"] == full["max"] and sub["total"] == sum(v["max"] for p, v in sub["properties"].items()
                                                             if p not in FAMILY_OF or FAMILY_OF[p] == "linear")
    for prop in FAMILY_PROPS:
        assert sub["properties"][prop]["max"] > 0 and sub["properties"][prop]["score"] == 0, prop
        assert sub["properties"][prop]["verdict"] == "not-declared", sub["properties"][prop]


def test_a_family_search_that_errors_is_never_graded_a_pass():
    """Whatever ends a family's search other than the failure it looks for (an error in the suite, a
    declaration that breaks only inside the search) is a "crash" cell worth nothing, never a pass."""
    from hypothesis import strategies as st
    from tpconform.families.embedding.case import EmbeddingCase
    from tpconform.families.registry import families
    from tpconform.grading.one import Grader

    cells: list = []
    grader = Grader("reference", seed_value=0, examples=3, world_sizes=[2], dtypes=["float32"], timeout_s=10,
                    emit=lambda record: cells.append(record.get("cell")))
    case = EmbeddingCase(world_size=2, vocab=3, dim=2, batch_shape=(2,), dtype="float32")
    grader.suite.cases = lambda variant, family_name="linear": st.just(case)

    def broken(case, stages=None):
        raise TypeError("'NoneType' object is not iterable")

    grader.suite.evidence = broken
    fam = families()["embedding"]
    grader.grade_family(fam)
    assert [c["property"] for c in cells] == list(fam.properties), cells
    for cell in cells:
        assert cell["verdict"] == "crash" and "could not judge it: TypeError" in cell["reason"], cell
