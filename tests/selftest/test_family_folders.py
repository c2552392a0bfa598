"""A family folder brings everything it owns (docs/ARCHITECTURE.md, "A family"): the template's files are
in every folder, and what the rest of the suite finds by convention is there to be found — so adding a
family is adding its folder, and a folder missing a piece fails here naming it."""

import os

import pytest
from tpconform.families import folders
from tpconform.families.registry import families

FAMILIES_DIR = os.path.dirname(os.path.abspath(folders.__file__))
# the template: what each file holds is in docs/ARCHITECTURE.md
TEMPLATE = ("case.py", "strategy.py", "verdict.py", "worker.py", "diagnosis.py", "family.py", "bugs/__init__.py")


def missing(folder: str) -> list[str]:
    """The template's files ``folder`` lacks (its ``reference.py``, needed only for an impl method the
    family names, is checked by what the reference offers: :func:`test_what_a_folder_brings_is_found`)."""
    return [name for name in TEMPLATE if not os.path.isfile(os.path.join(folder, name))]


@pytest.mark.parametrize("name", folders.names())
def test_every_family_folder_has_the_templates_files(name):
    lacking = missing(os.path.join(FAMILIES_DIR, name))
    assert not lacking, f"conformance/families/{name}/ lacks {', '.join(lacking)} (the family template)"


@pytest.mark.parametrize("name", folders.names())
def test_what_a_folder_brings_is_found(name):
    """Its strategies are re-exported, its seeded bugs listed by the zoo, its reference method composed."""
    import tpconform.strategies
    from tpconform.impls.protocol import TensorParallelImpl
    from tpconform.impls.reference import ReferenceImpl
    from tpconform.impls.zoo import BY_NAME

    strategy, = (m for n, m in folders.each("strategy") if n == name)
    assert strategy.__all__, f"{name}/strategy.py names no strategy in __all__"
    for export in strategy.__all__:
        assert getattr(tpconform.strategies, export) is getattr(strategy, export)
    bugs, = (m for n, m in folders.each("bugs") if n == name)
    assert bugs.BUGS and all(b.module.startswith("tpconform.") for b in bugs.BUGS), f"{name}/bugs/bugs.toml lists none"
    assert all(BY_NAME[b.name] is b for b in bugs.BUGS), f"{name}/bugs: not all listed by the zoo"
    for method in filter(None, (m.strip() for m in families()[name].offered_by.split("/"))):
        assert getattr(ReferenceImpl, method, None) is not getattr(TensorParallelImpl, method, None), \
            f"the reference offers no {method}: conformance/families/{name}/reference.py lacks its Reference.{method}"


def test_a_folder_missing_a_file_is_named(tmp_path):
    for name in TEMPLATE:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("")
    (tmp_path / "diagnosis.py").unlink()
    assert missing(str(tmp_path)) == ["diagnosis.py"]
