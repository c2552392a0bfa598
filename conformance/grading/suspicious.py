"""Lines of a submission that reach into the grading harness or the process, for a person to review.

A plain text scan (nothing is imported or run): imports of the suite's own modules, stack-frame,
garbage-collector and ``ctypes`` introspection, ``prctl``/``ptrace``, ``/proc``, signals, forks and
new sessions, subprocesses, sockets, and files that change the Python environment. A hit is not a
verdict: the sandbox and the scoring do not depend on it. The report lists at most
:data:`MAX_HITS` lines per submission, each cut to :data:`MAX_CODE` characters.
"""

from __future__ import annotations

import re

MAX_HITS = 50
MAX_CODE = 200

PATTERNS = [
    (r"\b(import|from)\s+tpconform\b", "imports the grading suite"),
    (r"\b(sys\._getframe|inspect\.(currentframe|stack|getouterframes|trace)|f_back|f_locals|f_globals|tb_frame)\b",
     "reads stack frames"),
    (r"\bgc\.(get_objects|get_referrers|get_referents)\b", "searches the garbage collector's objects"),
    (r"\bctypes\b|\bcffi\b|\bprctl\b|\bptrace\b|PR_SET_|libc", "calls into the C library / process controls"),
    (r"/proc\b|/dev/(mem|kmem|tty)", "reads or writes /proc or devices"),
    (r"\bos\.(kill|killpg|setsid|setpgid|setpgrp|fork|forkpty|mkfifo|mknod|symlink|chmod|chown|ptsname)\b"
     r"|\bsignal\.(signal|pthread_kill|SIG)", "signals, forks, sessions or file modes"),
    (r"\b(subprocess|multiprocessing|pty|socket|urllib|http\.client|requests)\b", "starts processes or opens sockets"),
    (r"sitecustomize|usercustomize|\.pth\b|site-packages|sys\.path|__builtins__|builtins\.|importlib|sys\.modules"
     r"|sys\.meta_path|sys\.settrace|sys\.setprofile|atexit", "changes imports, builtins or the interpreter"),
    (r"\b(exec|eval|compile)\s*\(|__import__|marshal|base64|zlib|codecs\.decode", "runs generated or hidden code"),
]
_COMPILED = [(re.compile(p), why) for p, why in PATTERNS]


def scan(files: dict[str, bytes]) -> list[dict]:
    """The suspicious lines of ``files`` (path → bytes): ``{file, line, code, why}``."""
    hits: list[dict] = []
    for path in sorted(files):
        if not path.endswith((".py", ".pth", ".pyx", ".toml", ".cfg", ".txt", ".sh")) and b"\0" in files[path][:4096]:
            hits.append({"file": path, "line": 0, "code": "(binary file)", "why": "a binary file in the submission"})
            continue
        if path.endswith((".pth", ".so", ".pyc")) or path.rsplit("/", 1)[-1] in ("sitecustomize.py", "usercustomize.py"):
            hits.append({"file": path, "line": 0, "code": "", "why": "a file the Python start-up runs"})
        text = files[path].decode("utf-8", "replace")
        for n, line in enumerate(text.splitlines(), 1):
            whys = [why for rx, why in _COMPILED if rx.search(line)]
            if whys:
                code = line.strip()
                hits.append({"file": path, "line": n, "code": code[:MAX_CODE] + ("…" if len(code) > MAX_CODE else ""),
                             "why": "; ".join(whys)})
            if len(hits) >= MAX_HITS:
                return hits
    return hits
