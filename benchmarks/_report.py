"""Shared by the benchmark scripts: print a table and update one section of docs/benchmarks.md."""

from __future__ import annotations

import fcntl
import os
import platform
import re
import time
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
HEADER = (
    "# Benchmarks\n\n"
    "Written by the scripts in `benchmarks/` (`make benchmarks` runs them all); each "
    "section is replaced when its script runs again. Speed is compared side by side in "
    "one run (ratio to a reference) because the machine is noisy.\n"
)


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    """A GitHub-markdown table; floats get 4 significant digits."""

    def cell(v: object) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def machine() -> str:
    try:
        import torch

        tv = f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    except ImportError:
        tv = "no torch"
    return f"{platform.machine()}, {os.cpu_count()} cores, {tv}"


def write_section(name: str, title: str, body: str) -> None:
    """Replace (or append) the section ``name`` of docs/benchmarks.md and print it."""
    stamp = time.strftime("%Y-%m-%d %H:%M")
    block = (
        f"<!-- {name}:start -->\n## {title}\n\n_{stamp}, {machine()}_\n\n{body.strip()}\n"
        f"<!-- {name}:end -->\n"
    )
    print(block)
    DOC.parent.mkdir(parents=True, exist_ok=True)
    key = re.escape(name)
    pattern = re.compile(rf"<!-- {key}:start -->.*?<!-- {key}:end -->\n", re.S)
    # Several benchmark scripts may finish at once: serialise the read-modify-write.
    with open(DOC.with_suffix(".md.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        text = DOC.read_text() if DOC.exists() else HEADER
        text = pattern.sub(lambda _: block, text) if pattern.search(text) else text + "\n" + block
        tmp = DOC.with_suffix(f".md.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, DOC)
