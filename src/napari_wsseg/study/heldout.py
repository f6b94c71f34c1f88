"""The study's held-out set: cases every model version is scored on and none trains on.

Stored in the catalog, in its own table (created on first use, so older catalogs need
no migration): one row per held-out image with who put it there, ``user`` (marked in
the viewer or with :func:`mark`) or ``seeded`` (the fixed split below). Decision: when
the user has marked none, the first call of :func:`held_out_ids` for a modality draws a
seeded quarter (at least one, never all; none below ``MIN_POOL``) of the images that
have a ground-truth mask (an accepted expert mask or a reference mask) and stores it,
so the split never moves when masks are added later: a case corrected after the split
trains, a held-out one stays held out. The draw takes images whose truth is only a
reference mask first, so a user's expert masks stay in training where it can.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_wsseg.study.records import utc_now

TABLE = """
CREATE TABLE IF NOT EXISTS held_out (
    image_id INTEGER PRIMARY KEY REFERENCES images(id),
    modality TEXT NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('user', 'seeded')),
    added TEXT NOT NULL
);
"""
FRACTION = 0.25
SEED = 20261201
# Fewer images with ground truth than this: no seeded split (one image cannot be both
# trained on and scored). From two on, one is held out: a score on one case is noisy,
# but a version scored on nothing cannot be compared at all.
MIN_POOL = 2


def _ensure(study) -> None:
    with study.transaction() as db:
        db.execute(TABLE)


def stored_ids(study, modality: str) -> list[int]:
    """Held-out image ids of ``modality`` stored so far (no split is drawn)."""
    _ensure(study)
    rows = study.query(
        "SELECT image_id FROM held_out WHERE modality = ? ORDER BY image_id", (modality,)
    )
    return [int(r[0]) for r in rows]


def _with_truth(study, modality: str) -> tuple[list[int], list[int]]:
    """Images with a ground truth: (reference mask only, with an accepted mask)."""
    ref_only, accepted = [], []
    for rec in study.images(modality):
        if study.latest_accepted_mask(rec.id) is not None:
            accepted.append(rec.id)
        elif study.reference_mask(rec.id):
            ref_only.append(rec.id)
    return ref_only, accepted


def held_out_ids(study, modality: str, fraction: float = FRACTION, seed: int = SEED) -> list[int]:
    """The modality's held-out image ids; draws and stores the seeded split if none is."""
    ids = stored_ids(study, modality)
    if ids:
        return ids
    ref_only, accepted = _with_truth(study, modality)
    total = len(ref_only) + len(accepted)
    if total < MIN_POOL:
        return []
    n = min(total - 1, max(1, int(round(total * fraction))))
    rng = np.random.default_rng(seed)
    # reference-only images first (each group in a seeded order), then accepted ones
    pool = [ref_only[int(i)] for i in rng.permutation(len(ref_only))]
    pool += [accepted[int(i)] for i in rng.permutation(len(accepted))]
    chosen = sorted(pool[:n])
    _store(study, modality, chosen, "seeded")
    return chosen


def _store(study, modality: str, ids: list[int], source: str) -> None:
    now = utc_now()
    with study.transaction() as db:
        db.execute(TABLE)
        for i in ids:
            db.execute(
                "INSERT OR REPLACE INTO held_out(image_id, modality, source, added) "
                "VALUES (?, ?, ?, ?)",
                (int(i), modality, source, now),
            )


def mark(study, image_ids: list[int], held_out: bool = True) -> None:
    """Put images into the held-out set (``source='user'``) or take them out.

    Marking replaces a seeded split of the same modality: the user's choice wins.
    """
    recs = {i: study.image(int(i)) for i in image_ids}
    _ensure(study)
    with study.transaction() as db:
        for i, rec in recs.items():
            if held_out:
                db.execute(
                    "DELETE FROM held_out WHERE modality = ? AND source = 'seeded'",
                    (rec.modality,),
                )
                db.execute(
                    "INSERT OR REPLACE INTO held_out(image_id, modality, source, added) "
                    "VALUES (?, ?, 'user', ?)",
                    (int(i), rec.modality, utc_now()),
                )
            else:
                db.execute("DELETE FROM held_out WHERE image_id = ?", (int(i),))


def held_out_of(study_root: str | Path, modality: str) -> list[int]:
    """:func:`held_out_ids` of a study folder (opens and closes it)."""
    from napari_wsseg.study.store import Study

    with Study.open(study_root) as st:
        return held_out_ids(st, modality)
