"""The summary table at the top of docs/benchmarks.md: every claim row of the
paper-regime sections (tables with ``_stats.CLAIM_HEADER``), gathered in one place.

Each regime benchmark calls :func:`write_summary` after writing its own section, so
the summary always repeats the numbers of the sections below it; a method whose
regime benchmark has not run yet gets one row saying so (its older section, if any,
has one or two seeds: inconclusive by construction).
"""

from __future__ import annotations

import fcntl
import os
import re

from _report import DOC, HEADER, machine, markdown_table
from _stats import CLAIM_HEADER

# section name -> (method, script that fills it, the paper's claim, the old sections)
REGIMES = {
    "chexseg-regime": ("CheXseg", "bench_chexseg.py --regime paper",
                       "p=0.9 0.299 > p=1 0.263, p=0 0.156 (Table 1)",
                       "`chexseg`: few-expert regime, 2 seeds, p=0.9 best"),
    "manifold-regime": ("Manifold attention", "bench_manifold.py --regime paper",
                        "attention +22 Dice over Grad-CAM (Table 1)",
                        "`manifold`: 3 classes, 3 seeds, DCML - Grad-CAM -12.6/+15.4/+10.0"),
    "glam-regime": ("GLAM", "bench_glam_regime.py",
                    "S_c > S_g, S_l; S_g > CAM (Tables 1/2)", "`glam`: joint model only, 1 seed"),
    "distill-regime": ("Distill-to-Label", "bench_distill_regime.py",
                       "student > teacher > MIL on instances (Tables I/II)",
                       "`distill`: 1 seed, 10 test slides"),
    "distill-regime-slides": ("Distill-to-Label", "bench_distill_regime.py --parts slides",
                              "student > teacher > MIL on instances, rare tumour (Tables I/II)",
                              "`distill`: 1 seed, 10 test slides, 3-14 % tumour"),
    "iagnet-regime": ("IAG-Net", "bench_iagnet_regime.py", "+5.24 DSC with D_u (Table IV)",
                      "`iagnet`: 1 seed, 6 test positives"),
}  # fmt: skip
START, END = "<!-- summary:start -->", "<!-- summary:end -->"
# the method benchmarks (issue 15) -> their sections, for the "where and how long" table
SCRIPTS = {
    "bench_chexseg.py": ("chexseg", "chexseg-regime", "chexseg-backbone"),
    "bench_manifold.py": ("manifold", "manifold-regime"),
    "bench_glam.py": ("glam",),
    "bench_glam_regime.py": ("glam-regime",),
    "bench_distill.py": ("distill", "distill-speed"),
    "bench_distill_regime.py": ("distill-regime", "distill-regime-slides"),
    "bench_iagnet.py": ("iagnet", "iagnet-speed", "iagnet-paper"),
    "bench_iagnet_regime.py": ("iagnet-regime",),
}


def _section(text: str, name: str) -> str | None:
    m = re.search(rf"<!-- {re.escape(name)}:start -->(.*?)<!-- {re.escape(name)}:end -->",
                  text, re.S)  # fmt: skip
    return m.group(1) if m else None


def _column_sum(body: str, col: str) -> float | None:
    """Sum of a table column named ``col`` (None when no table has it)."""
    for block in re.findall(r"(\|[^\n]*\|\n\|[-|]+\|\n(?:\|[^\n]*\|\n?)+)", body):
        lines = block.strip().splitlines()

        def cells(line: str) -> list[str]:  # split on the unescaped pipes
            return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]

        head = cells(lines[0])
        if col in head:
            i = head.index(col)
            vals = [re.match(r"[\d.]+", cells(ln)[i]) for ln in lines[2:]]
            return sum(float(v.group(0)) for v in vals if v)
    return None


def wall_time(body: str) -> str:
    """The wall time a section states: its 'Total N s' / 'Whole script: N s', else a sum
    of its per-row times (marked), else 'not stated'."""
    m = re.search(r"(?:Total(?: time)?|Whole script:) (\d+) s", body) or re.search(
        r"(\d+) s \(wall\)", body
    )
    if m:
        return f"{int(m.group(1))} s ({int(m.group(1)) / 60:.0f} min)"
    per_seed = _column_sum(body, "time (s) per seed")
    seeds = re.search(r"(\d+) seeds", body)
    if per_seed is not None and seeds:
        total = per_seed * int(seeds.group(1))
        return f"~{total:.0f} s ({total / 60:.0f} min; per-seed times x {seeds.group(1)} seeds)"
    train = _column_sum(body, "train s")
    if train is not None:
        return f">= {train:.0f} s (training only: the train s column)"
    timed = _column_sum(body, "seconds")
    if timed is not None:
        return f">= {timed:.0f} s (the timed runs of its table)"
    return "no total stated (a throughput section: tiles/s, no run times)"


def runs_table(text: str) -> str:
    """Where (device) and how long (wall) each method benchmark section's run took."""
    rows = []
    for script, names in SCRIPTS.items():
        for name in names:
            body = _section(text, name)
            if body is None:
                rows.append([f"`{script}`", name, "–", "–", "not run yet"])
                continue
            stamp = re.search(r"_(\d{4}-\d\d-\d\d \d\d:\d\d)", body)
            dev = re.search(r"(?<!-)device (cpu|cuda)(?=[.,;) ])", body)
            rows.append([f"`{script}`", name, stamp.group(1) if stamp else "–",
                         dev.group(1) if dev else "cpu", wall_time(body)])  # fmt: skip
    return markdown_table(["script", "section", "run at (UTC)", "device", "wall time"], rows)


def claim_rows(text: str) -> dict[str, list[list[str]]]:
    """Claim rows per regime section found in the document text."""
    head = "| " + " | ".join(CLAIM_HEADER) + " |"
    out: dict[str, list[list[str]]] = {}
    for name in REGIMES:
        m = re.search(rf"<!-- {re.escape(name)}:start -->(.*?)<!-- {re.escape(name)}:end -->",
                      text, re.S)  # fmt: skip
        if not m or head not in m.group(1):
            continue
        rows = []
        for block in m.group(1).split(head)[1:]:
            for line in block.splitlines()[2:]:
                if not line.startswith("|"):
                    break
                rows.append([c.strip() for c in line.strip().strip("|").split("|")])
        out[name] = rows
    return out


def write_summary() -> None:
    """Rewrite the summary block right after the document's title paragraph."""
    with open(DOC.with_suffix(".md.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        text = DOC.read_text() if DOC.exists() else HEADER
        found = claim_rows(text)
        rows = []
        for name, (method, script, paper, old) in REGIMES.items():
            if name in found:
                rows += [[method, *r] for r in found[name]]
            else:
                rows.append([method, f"(regime run pending: `{script}`)", paper,
                             f"not run here; {old}", "inconclusive", "–"])  # fmt: skip
        counts = {v: sum(r[4] == v for r in rows)
                  for v in ("reproduced", "not reproduced", "inconclusive")}  # fmt: skip
        block = (
            f"{START}\n## Summary: the papers' claims in their own regime (issue 15)\n\n"
            f"_{machine()}; rows copied from the sections below by `benchmarks/_summary.py`_\n\n"
            "Each claim is a paired difference per seed/fold/trial with a 95 % Student-t CI; "
            "the verdict follows from the CI only (reproduced: CI above 0; not reproduced: CI "
            "below 0; inconclusive: CI contains 0). Small CPU runs give wide CIs: "
            "'inconclusive' mostly means 'needs more seeds', not 'false'. "
            f"Totals: {counts['reproduced']} reproduced, {counts['not reproduced']} not "
            f"reproduced, {counts['inconclusive']} inconclusive.\n\n"
            + markdown_table(["method", *CLAIM_HEADER], rows)
            + "\n\n### Where and how long each method benchmark ran\n\n"
            "No GPU was lent to these sessions: every run here was on the shared 2-core "
            "CPU (1 torch thread unless the section's stamp says more; quality runs mostly at "
            "`nice -n 19` next to other engineers' jobs, so wall times are upper bounds). "
            "Every method script takes `--device "
            "cuda` for a GPU re-run.\n\n" + runs_table(text) + f"\n{END}\n"
        )
        if START in text:
            text = re.sub(rf"{START}.*?{END}\n", lambda _: block, text, flags=re.S)
        else:
            cut = text.find("\n<!--")
            cut = len(text) if cut < 0 else cut + 1
            text = text[:cut] + block + "\n" + text[cut:]
        tmp = DOC.with_suffix(f".md.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, DOC)
    print(block)


if __name__ == "__main__":
    write_summary()
