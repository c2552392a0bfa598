"""The package list, found (pyproject.toml holds everything else): every folder with an ``__init__.py``
under the four folders that make up ``tpconform`` (``[tool.setuptools.package-dir]``), so a new family
folder, or a new ``bugs/`` package in one, needs no line anywhere. ``tests/selftest/test_gate.py`` checks
that the list covers every such folder and names nothing outside ``tpconform``."""

import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))
# the installed name of each folder (pyproject.toml's package-dir: the repository keeps its folders)
ROOTS = {"tpconform": "conformance", "tpconform.impls": "impls", "tpconform.strategies": "strategies",
         "tpconform.properties": os.path.join("tests", "properties")}


def packages() -> list:
    found = []
    for name, folder in ROOTS.items():
        found.append(name)
        found += [f"{name}.{sub}" for sub in find_packages(os.path.join(HERE, folder))]
    return sorted(found)


if __name__ == "__main__":
    setup(packages=packages())
