"""Implementations the suite can check: the reference, the registry, adapters and the seeded-bug zoo.

Nothing in this package is imported by the process that computes the verdict, except
``tpconform.impls.registry`` (names and import targets only, never the implementations themselves) and
``tpconform.impls.preflight`` (reads an impl's source without running it).
"""
