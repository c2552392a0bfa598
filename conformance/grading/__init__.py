"""Grading mode: score a folder of submitted implementations, each in its own isolated process tree.

``tpconform grade SUBMISSIONS/ --out report/`` (see ``docs/GRADING.md``):

- :mod:`.submissions` finds the submissions and how each is loaded;
- :mod:`.one` is the verdict process for one submission (run in isolation, streams cell results);
- :mod:`.isolation` starts it: clean environment, private temp dir, resource and time limits;
- :mod:`.scoring` turns cell results into scores with the weights of ``weights.toml``;
- :mod:`.report` writes the JSON, Markdown and HTML reports; :mod:`.gradescope` the Gradescope
  results, from :mod:`.student_view` (what a student sees: no path of the grader's); every text a
  submission controls goes through :mod:`.markdown_safe` (Markdown) or one shell word per argument;
  :mod:`.logs` takes the noise out of a verdict's log;
- :mod:`.cli` is the ``grade`` command: progress bar, resume, the run's record.
"""
