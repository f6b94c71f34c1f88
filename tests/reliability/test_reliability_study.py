"""The study as an adversary uses it: clean never removes what a row points to, ids
are integers, masks fit their modality, CSVs import all rows or none, broken files get
an error naming them."""

from __future__ import annotations

import imageio.v3 as iio
import nibabel as nib
import numpy as np
import pytest
import tifffile

from napari_wsseg.io import ImageReadError, InputError, read_image
from napari_wsseg.phantoms.demo import make_phantom, make_study
from napari_wsseg.study import Study


@pytest.fixture
def small(tmp_path):
    with make_study(tmp_path / "s", {"skin": 1, "mammo": 1}, {}, sizes={"mammo": (64, 48)}) as st:
        yield st


def _png(path, seed=0):
    iio.imwrite(path, make_phantom("skin", seed, shape=(32, 32)).image, extension=".png")
    return path


@pytest.mark.parametrize("name", [".tmp-scan.png", ".scan.tmp.png"])
def test_reliability_clean_keeps_an_image_whose_name_looks_like_a_leftover(name, small, tmp_path):
    image_id = small.add_image(_png(tmp_path / name), "skin")
    assert small.image(image_id).path.name == name
    assert small.check(clean=True) == []
    assert small.image(image_id).path.is_file() and small.check() == []


def test_reliability_clean_keeps_an_image_registered_in_place_under_masks(small):
    inside = small.root / "masks" / "mine.png"
    _png(inside)
    image_id = small.add_image(inside, "skin", copy=False)
    assert small.check(clean=True) == [] and inside.is_file()
    assert small.image(image_id).path == inside


def test_reliability_clean_removes_only_unreferenced_leftovers_and_is_dry_by_default(small):
    skin = small.images("skin")[0]
    vid = small.save_mask(skin.id, np.ones(skin.meta["shape"], np.uint8), "expert")
    folder = small.mask_version(vid).path.parent
    (folder / "v99.tif").write_bytes(b"orphan")
    (folder / ".v5.abc.tmp.tif").write_bytes(b"temp")
    staged = small.root / "images" / "skin" / ".tmp-x.png-1-0"
    staged.write_bytes(b"unfinished")
    dry = small.check()
    assert len(dry) == 3 and all(p.endswith("(no catalog row)") for p in dry)
    assert (folder / "v99.tif").exists() and staged.exists()
    removed = small.check(clean=True)
    assert len(removed) == 3 and all(p.endswith(": removed") for p in removed)
    assert not (folder / "v99.tif").exists() and not staged.exists()
    assert small.mask_version(vid).path.is_file() and small.check() == []


@pytest.mark.parametrize("bad", [17.0, True, "1", None, np.float64(1)])
def test_reliability_image_ids_must_be_integers(bad, small):
    skin = small.images("skin")[0]
    with pytest.raises(InputError, match="image id must be an integer"):
        small.save_mask(bad, np.zeros(skin.meta["shape"], np.uint8), "expert")
    folders = {p.name for p in (small.root / "masks").iterdir()}
    assert folders <= {str(r.id) for r in small.images()}  # no masks/17.0/, masks/True/


def test_reliability_numpy_integer_image_id_works(small):
    skin = small.images("skin")[0]
    vid = small.save_mask(np.int64(skin.id), np.zeros(skin.meta["shape"], np.uint8), "expert")
    assert small.mask_version(vid).image_id == skin.id


@pytest.mark.parametrize(
    ("modality", "value", "message"),
    [
        ("skin", 70000, "holds label 70000, but a skin mask holds 0 = background, 1 = lesion"),
        ("mammo", 255, "holds label 255, but a mammo mask holds 0 = background, 1 = malignant"),
    ],
)
def test_reliability_mask_labels_must_be_the_modality_classes(modality, value, message, small):
    rec = small.images(modality)[0]
    before = small.mask_versions(rec.id)
    mask = np.zeros(rec.meta["shape"], np.int64)
    mask[0, 0] = value
    with pytest.raises(ValueError, match=message):
        small.save_mask(rec.id, mask, "expert")
    assert small.mask_versions(rec.id) == before


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (lambda s: np.ones(s, np.complex64), "complex"),
        (lambda s: np.full(s, "a"), "text"),
        (lambda s: np.full(s, None, dtype=object), "Python object"),
    ],
)
def test_reliability_mask_of_a_wrong_type_is_a_clear_error(make, kind, small):
    rec = small.images("skin")[0]
    with pytest.raises(ValueError, match=f"mask of image {rec.id}: .*got {kind} values"):
        small.save_mask(rec.id, make(rec.meta["shape"]), "expert")
    with pytest.raises(ValueError, match="got None"):
        small.save_mask(rec.id, None, "expert")


def test_reliability_csv_with_a_bad_late_row_imports_nothing(small, tmp_path):
    for i in range(5):
        _png(tmp_path / f"ok{i}.png", seed=i)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    rows = [f"ok{i}.png,skin" for i in range(5)] + ["broken.png,skin"]
    csv = tmp_path / "list.csv"
    csv.write_text("path,modality\n" + "\n".join(rows) + "\n")
    before = len(small.images())
    with pytest.raises(ValueError, match=r"list.csv, row 7: .*broken.png.*nothing was imported"):
        small.import_csv(csv)
    assert len(small.images()) == before
    assert list((small.root / "images" / "skin").glob(".tmp-*")) == []


def test_reliability_csv_with_a_too_long_path_names_csv_and_row(small, tmp_path):
    csv = tmp_path / "long.csv"
    csv.write_text(f"path,modality\n{'a' * 300}.png,skin\n")
    with pytest.raises(ValueError, match=r"long.csv, row 2: image path .*File name too long"):
        small.import_csv(csv)


@pytest.mark.parametrize("content", [b"\0" * 100, b"hello, not an image"])
def test_reliability_corrupt_png_names_the_file_not_a_plugin(content, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(content)
    with pytest.raises(ImageReadError, match=r"bad.png: not a readable PNG file") as err:
        read_image(bad)
    assert "pip install" not in str(err.value) and "identify" in str(err.value)


def _nifti(path, affine, shape=(4, 5, 6), pixdim=None):
    """A .nii whose header carries ``affine`` as its sform (nibabel refuses to write
    such files, so the header is patched by hand), or ``pixdim`` with no sform/qform."""
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(np.int16)
    hdr["qform_code"] = 0
    if pixdim is not None:
        hdr["sform_code"] = 0
        hdr["pixdim"][1:4] = pixdim
    else:
        hdr["sform_code"] = 1
        for i, key in enumerate(("srow_x", "srow_y", "srow_z")):
            hdr[key] = affine[i]
    hdr["vox_offset"] = 352
    path.write_bytes(hdr.binaryblock + b"\0" * 4 + np.zeros(shape, np.int16).tobytes())
    return path


@pytest.mark.parametrize(
    ("affine", "pixdim", "message"),
    [
        (np.zeros((4, 4)), None, "voxel size is zero"),
        (np.full((4, 4), np.nan), None, "NaN or infinite"),
        (np.diag([1.0, 0.0, 1.0, 1.0]), None, "voxel size is zero"),
        (
            np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], float),
            None,
            "singular",
        ),
    ],
)
def test_reliability_nifti_with_an_unusable_affine(affine, pixdim, message, tmp_path):
    path = _nifti(tmp_path / "v.nii", affine, pixdim=pixdim)
    with pytest.raises(ImageReadError, match=rf"v.nii: NIfTI .*{message}"):
        read_image(path)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_reliability_nifti_header_claiming_huge_data_is_refused_before_allocating(
    suffix, tmp_path
):
    path = tmp_path / f"big{suffix}"
    img = nib.Nifti1Image(np.zeros((8, 8, 8), np.int16), np.eye(4))
    nib.save(img, str(path))
    hdr = nib.load(str(path)).header.copy()
    hdr.set_data_shape((4096, 4096, 4096))
    raw = hdr.binaryblock + b"\0" * (int(hdr["vox_offset"]) - 348) + b"\0" * 1024
    if suffix == ".nii.gz":
        import gzip

        raw = gzip.compress(raw)
    path.write_bytes(raw)
    with pytest.raises(ImageReadError, match=r"claims \(4096, 4096, 4096\) int16 voxels"):
        read_image(path)


def _pyramid(path):
    tile = np.full((64, 64, 3), 180, np.uint8)
    with tifffile.TiffWriter(path) as tw:
        for level, side in enumerate((512, 256, 128)):
            tw.write(
                (tile for _ in range((side // 64) ** 2)),
                shape=(side, side, 3),
                dtype=np.uint8,
                tile=(64, 64),
                compression="jpeg",
                subfiletype=1 if level else 0,
                **({"subifds": 2} if level == 0 else {}),
            )


def test_reliability_truncated_slide_is_refused_at_import(small, tmp_path):
    path = tmp_path / "slide.tif"
    _pyramid(path)
    whole = path.read_bytes()
    ok = small.add_image(path, "slide")
    assert small.image(ok).meta["shape"] == [512, 512]
    cut = tmp_path / "cut.tif"
    cut.write_bytes(whole[: len(whole) // 3])
    n = len(small.images())
    with pytest.raises(ImageReadError, match=r"cut.tif: slide tiles do not decode"):
        small.add_image(cut, "slide")
    assert len(small.images()) == n and small.check() == []


def _save_and_die(root, image_id, shape):
    import os

    from napari_wsseg.io import faults

    os.environ[faults.ENV] = "save-mask:before-commit"
    with Study.open(root) as study:
        study.save_mask(image_id, np.ones(shape, np.uint8), "expert")
    os._exit(0)


def test_reliability_save_killed_before_commit_leaves_only_an_orphan(small):
    import multiprocessing
    import signal

    rec = small.images("skin")[0]
    kept = small.save_mask(rec.id, np.zeros(rec.meta["shape"], np.uint8), "expert")
    args = (str(small.root), rec.id, rec.meta["shape"])
    child = multiprocessing.get_context("fork").Process(target=_save_and_die, args=args)
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    problems = small.check()
    assert len(problems) == 1 and problems[0].startswith("orphan mask file masks/")
    assert small.check(clean=True)[0].endswith(": removed") and small.check() == []
    assert small.mask_version(kept).path.is_file()
    again = small.save_mask(rec.id, np.ones(rec.meta["shape"], np.uint8), "expert")
    assert small.mask_version(again).version > small.mask_version(kept).version


def test_reliability_study_info_is_a_dry_run_unless_told_to_clean(small, capsys):
    from napari_wsseg.cli import main

    orphan = small.root / "masks" / "1" / "v77.tif"
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"left by a crash")
    assert main(["study-info", str(small.root)]) == 1
    assert "orphan mask file masks/1/v77.tif (no catalog row)" in capsys.readouterr().out
    assert orphan.exists()
    assert main(["study-info", str(small.root), "--clean"]) == 0
    assert "v77.tif (no catalog row): removed" in capsys.readouterr().out
    assert not orphan.exists() and main(["study-info", str(small.root)]) == 0


def test_reliability_clean_skips_a_live_imports_staged_copy_without_waiting(small, tmp_path):
    import os

    from napari_wsseg.study.importing import claim

    src = _png(tmp_path / "big.png")
    with small.file_lock():
        staged, hold = claim(src, small.root / "images" / "skin", is_dir=False)
    try:
        assert small.check(clean=True) == [] and staged.exists()  # held: not a leftover
    finally:
        os.close(hold)  # the import dies here
    assert small.check(clean=True) == [
        f"unfinished import images/skin/{staged.name} (no catalog row): removed"
    ]
    assert not staged.exists()
