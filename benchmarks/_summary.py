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
            + f"\n{END}\n"
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
