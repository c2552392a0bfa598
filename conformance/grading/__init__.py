"""Grading mode: score a folder of submitted implementations, each in its own isolated process tree.

``tpconform grade SUBMISSIONS/ --out report/`` (see ``docs/GRADING.md``):

- :mod:`.submissions` finds the submissions and how each is loaded;
- :mod:`.one` is the verdict process for one submission (run in isolation, streams cell results);
- :mod:`.isolation` starts it: clean environment, private temp dir, resource and time limits;
- :mod:`.scoring` turns cell results into scores with the weights of ``weights.toml``;
- :mod:`.report` writes the JSON, Markdown, HTML and Gradescope reports;
- :mod:`.cli` is the ``grade`` command: progress bar, resume, the run's record.
"""
