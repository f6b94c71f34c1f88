"""The comparison picks up held-out scores its job writes after the version is listed."""

from __future__ import annotations

import json

from napari_wsseg.widgets.qt_compare import QtCompare


def _entry(vdir, version: str, dice: float | None) -> dict:
    vdir.mkdir(parents=True)
    held = None if dice is None else {"ids": [1], "summary": {"dice": dice, "n_images": 1}}
    return {"method": "manifold", "version": version, "path": str(vdir), "metrics": {},
            "info": {"parent": str(vdir.parent / "v001")}, "held_out": held,
            "current": version == "v001", "title": f"manifold {version}"}  # fmt: skip


def test_scores_written_after_listing_replace_the_scoring_note(qtbot, tmp_path):
    """The job writes held_out.json ~1 s after weights.pt; a dock that listed the version
    in between said "scoring on the held-out set…" for good (seen driving the
    screenshots)."""
    mdir = tmp_path / "models" / "manifold"
    current, new = _entry(mdir / "v001", "v001", 0.5), _entry(mdir / "v002", "v002", None)
    box = QtCompare()
    qtbot.addWidget(box)
    box.set_pair(None, current, new)  # no study: the box never scores by itself here
    assert box.note.text().endswith("…") and box._poll.isActive()
    summary = {"dice": 0.6, "miou": 0.4, "auc": None, "n_images": 1}
    (mdir / "v002" / "held_out.json").write_text(json.dumps({"ids": [1], "summary": summary}))
    qtbot.waitUntil(lambda: "overlays" in box.note.text(), timeout=5000)
    cells = [box.table.item(0, c).text() for c in range(3)]
    assert cells == ["held-out Dice", "0.500", "0.600 ▲"] and not box._poll.isActive()
