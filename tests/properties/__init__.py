"""The conformance spec as pytest tests: run them with ``pytest --impl=SPEC``."""
