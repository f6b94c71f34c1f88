"""Run every benchmark script in turn (``make benchmarks``); each writes its section of
docs/benchmarks.md. Pass ``--quick`` to forward it to the scripts that take it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NEEDS_DISPLAY = {"bench_ui.py"}


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    failed = []
    for script in sorted(HERE.glob("bench_*.py")):
        cmd = [sys.executable, str(script)]
        if quick and "--quick" in script.read_text():
            cmd.append("--quick")
        if script.name in NEEDS_DISPLAY and not os.environ.get("DISPLAY"):
            if not shutil.which("xvfb-run"):
                print(f"{script.name}: needs a display and xvfb-run is missing", file=sys.stderr)
                failed.append(script.name)
                continue
            cmd = ["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24", *cmd]
        t0 = time.perf_counter()
        print(f"== {script.name}", flush=True)
        code = subprocess.call(cmd)
        print(f"== {script.name}: exit {code} in {time.perf_counter() - t0:.0f} s", flush=True)
        if code:
            failed.append(script.name)
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
