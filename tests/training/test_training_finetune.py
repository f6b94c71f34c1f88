"""Fine-tuning a version (--parent), presets and stage plans, promotion, the held-out set."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tiny_sets import TINY

from napari_wsseg.cli import main
from napari_wsseg.study import heldout
from napari_wsseg.study.store import Study
from napari_wsseg.training import presets, promotion
from napari_wsseg.training.snapshots import HELD_OUT, take_snapshot


@pytest.fixture
def study_root(demo_study, tmp_path) -> Path:
    return Path(shutil.copytree(demo_study.root, tmp_path / "study"))


def _fake_version(mdir: Path, name: str) -> Path:
    vdir = mdir / name
    vdir.mkdir(parents=True)
    (vdir / "info.json").write_text(json.dumps({"method": "manifold", "config": {}}))
    (vdir / "weights.pt").write_bytes(b"")
    return vdir


def test_training_keys_and_stage_plans_per_preset():
    cfg = {"unet_steps": 120, "metric_lr": 1e-3, "widths": [8], "image_size": 64}
    assert sorted(presets.training_keys(cfg)) == ["metric_lr", "unet_steps"]
    stages = ["classifier", "segmentation"]
    # new masks change CheXseg's segmenter, never its classifier
    assert presets.stage_plan("chexseg", stages, "quick", True) == {
        "classifier": 0,
        "segmentation": presets.QUICK_STEPS["chexseg"]["segmentation"],
    }
    paper = presets.stage_plan("chexseg", stages, "paper", True, config={"seg_steps": 777})
    assert paper == {"classifier": 0, "segmentation": 777}
    scratch = presets.stage_plan("chexseg", stages, "quick", False, config={"seg_steps": 5})
    assert scratch["segmentation"] == 5 and "classifier" not in scratch  # the method's own
    with pytest.raises(ValueError, match="no stage teacher"):
        presets.stage_plan("chexseg", stages, "quick", True, ["teacher"])
    assert presets.estimate_seconds({"segmentation": 0.5, "*": 2.0}, {"segmentation": 10}) == 5.0
    assert presets.estimate_seconds({}, {"x": 3}) is None


def test_promotion_pointer_revert_decline_and_auto(tmp_path):
    mdir = tmp_path / "manifold"
    for name in ("v001", "v002", "v003"):
        _fake_version(mdir, name)
    assert promotion.current_version(mdir) == "v001"  # never promoted: the shipped default
    assert promotion.offered_version(mdir) == "v003"
    promotion.promote(mdir, "v002")
    assert promotion.current_version(mdir) == "v002"
    assert promotion.previous_version(mdir) == "v001"
    assert json.loads((mdir / promotion.CURRENT).read_text())["version"] == "v002"
    promotion.decline(mdir, "v003")
    assert promotion.offered_version(mdir) is None and promotion.current_version(mdir) == "v002"
    assert promotion.revert(mdir)["version"] == "v001"
    assert not promotion.auto_promote(mdir, "v003", 0.40, 0.41)  # worse: stays
    assert promotion.current_version(mdir) == "v001"
    assert promotion.auto_promote(mdir, "v003", 0.41, 0.41)  # not worse: promoted
    assert promotion.current_version(mdir) == "v003"
    with pytest.raises(FileNotFoundError, match="v009"):
        promotion.promote(mdir, "v009")
    (mdir / promotion.CURRENT).write_text("{broken")
    with pytest.raises(ValueError, match="current.json"):
        promotion.current_version(mdir)


def test_held_out_split_is_stored_stable_and_never_trained_on(study_root):
    with Study.open(study_root) as st:
        ids = heldout.held_out_ids(st, "skin")
        assert len(ids) == 1  # a quarter of 4 images with ground truth
        extra = st.images("skin")[0].id
        st.save_mask(extra, st.load_mask(st.reference_mask(extra).id), source="expert")
        assert heldout.held_out_ids(st, "skin") == ids  # masks added later never move it
    snap = take_snapshot(str(study_root), "skin", 0.0, 0)
    assert [it.image_id for it in snap.items if it.split == HELD_OUT] == ids
    with Study.open(study_root) as st:
        others = [r.id for r in st.images("skin") if r.id not in ids][:2]
        heldout.mark(st, others)  # the user's choice replaces the seeded split
        assert heldout.held_out_ids(st, "skin") == sorted(others)


def test_held_out_split_of_a_small_modality_prefers_reference_only_cases(study_root, tmp_path):
    """Two images with ground truth (the demo's mammograms, one with an expert mask):
    one is held out, the one whose truth is only a reference mask; one image: none."""
    from napari_wsseg.phantoms.demo import make_study

    with Study.open(study_root) as st:
        recs = st.images("mammo")
        expert = [r.id for r in recs if st.latest_accepted_mask(r.id) is not None]
        assert len(recs) == 2 and len(expert) == 1
        ids = heldout.held_out_ids(st, "mammo")
        assert len(ids) == 1 and ids != expert  # the user's expert mask stays in training
        assert heldout.held_out_ids(st, "mammo") == ids  # stored: drawn once
    lone = make_study(
        tmp_path / "lone", {"skin": 1}, {}, seed=5, sizes={"skin": {"shape": (32, 32)}}
    )
    try:
        assert heldout.held_out_ids(lone, "skin") == []  # one image cannot train and score
    finally:
        lone.close()


def test_train_parent_keeps_its_config_reruns_chosen_stages_and_is_not_promoted(study_root):
    sets = [a for k, v in TINY["manifold"].items() for a in ("--set", f"{k}={v}")]
    base = ["train", "--method", "manifold", "--study", str(study_root), "--device", "cpu"]
    assert main([*base, "--out", str(study_root / "runs" / "a"), "--steps", "2", *sets]) == 0
    mdir = study_root / "models" / "manifold"
    v1 = json.loads((mdir / "v001" / "info.json").read_text())
    # an architecture change is refused, naming the key
    assert main([*base, "--out", str(study_root / "runs" / "b"), "--parent", "v001",
                 "--set", "image_size=64"]) == 2  # fmt: skip
    (mdir / "v001" / "held_out.json").unlink()  # as a shipped default: never scored here
    out = study_root / "runs" / "c"
    code = main([*base, "--out", str(out), "--parent", "current", "--preset", "quick",
                 "--steps", "2", "--set", "unet_lr=0.0005"])  # fmt: skip
    assert code == 0
    job = json.loads((out / "job.json").read_text())
    assert job["parent"] == str((mdir / "v001").resolve()) and job["preset"] == "quick"
    assert job["stage_steps"] == {"metric_dcml": 0, "metric_full": 0, "unet": 2}
    v2 = json.loads((mdir / "v002" / "info.json").read_text())
    assert {**v1["config"], "unet_lr": 0.0005} == v2["config"]
    events = [json.loads(line) for line in (out / "progress.jsonl").read_text().splitlines()]
    assert {e["stage"] for e in events if e["event"] == "step"} == {"unet"}
    scores = json.loads((mdir / "v002" / "held_out.json").read_text())
    assert scores["ids"] and "dice" in scores["summary"]  # scored on the held-out set
    parent = json.loads((mdir / "v001" / "held_out.json").read_text())
    assert parent["ids"] == scores["ids"]  # the parent on the same cases: like with like
    assert "unet" in json.loads((mdir / "v002" / "timing.json").read_text())["step_seconds"]
    assert promotion.current_version(mdir) == "v001"  # offered, not promoted
    assert promotion.offered_version(mdir) == "v002"


def test_quick_fine_tune_of_iagnet_lowers_lr_and_glam_distill_run_the_masks_stage():
    """Quick retrains: IAG-Net at lr 1e-5 (QUICK_LR); GLAM and Distill rerun only our
    ``masks`` stage (weak losses + the corrected masks), the paper preset as long as
    the stage it extends."""
    from napari_wsseg.training.defaults import SHIPPED as SHIPPED_DIR

    iag = presets.fine_tune_spec(SHIPPED_DIR / "iagnet", "out", "", "quick")
    assert iag.config["lr"] == 1e-5 and iag.stage_steps == {"iagnet": 150} and iag.guard
    glam = presets.fine_tune_spec(SHIPPED_DIR / "glam", "out", "", "quick")
    assert not glam.guard  # the parent guard only where fine-tunes were seen to drop
    assert glam.stage_steps == {"global": 0, "local": 0, "joint": 0, "masks": 40}
    paper = presets.fine_tune_spec(SHIPPED_DIR / "distill", "out", "", "paper")
    assert paper.stage_steps == {"teacher": 0, "student": 0, "masks": 1000}
    assert paper.config.get("lr") == 1e-4 and not paper.guard  # the paper's
