"""CSV import: good rows land with labels; bad rows fail naming the CSV row."""

from __future__ import annotations

import imageio.v3 as iio
import pytest

from napari_wsseg.cli import main
from napari_wsseg.phantoms.demo import make_phantom
from napari_wsseg.study import Study


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "incoming"
    folder.mkdir()
    for i in range(2):
        iio.imwrite(
            folder / f"skin{i}.png",
            make_phantom("skin", i, shape=(32, 32)).image,
            extension=".png",
        )
    iio.imwrite(
        folder / "cxr.png", make_phantom("xray", 1, shape=(64, 64)).image, extension=".png"
    )
    return folder


def _csv(folder, text):
    path = folder / "list.csv"
    path.write_text(text)
    return path


def test_study_csv_import_ok(tmp_path, images):
    csv = _csv(
        images,
        "path,modality,melanoma,nevus,edema\n"
        "skin0.png,skin,1,0,\nskin1.png,skin,,1,\n"
        f"{images / 'cxr.png'},xray,,,1\n",
    )
    with Study.create(tmp_path / "s") as study:
        ids = study.import_csv(csv)
        recs = [study.image(i) for i in ids]
    assert [r.modality for r in recs] == ["skin", "skin", "xray"]
    assert [r.labels for r in recs] == [
        {"melanoma": 1.0, "nevus": 0.0},
        {"nevus": 1.0},
        {"edema": 1.0},
    ]
    assert all(r.relpath.startswith("images/") for r in recs)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("skin1.png,ultrasound,,", "row 3: unknown modality 'ultrasound'"),
        ("gone.png,skin,1,", "row 3: image file .*gone.png does not exist"),
        ("skin1.png,skin,yes,", "row 3: label 'melanoma' must be 0/1, got 'yes'"),
        ("cxr.png,xray,,1", "row 3: label 'nevus' does not belong to xray"),
        ("skin1.png,skin,2,", r"row 3: label 'melanoma' must be in \[0, 1\]"),
        (",skin,1,", "row 3: empty path"),
    ],
)
def test_study_csv_bad_rows_name_the_row(tmp_path, images, row, message):
    csv = _csv(images, f"path,modality,melanoma,nevus\nskin0.png,skin,1,0\n{row}\n")
    with Study.create(tmp_path / "s") as study:
        with pytest.raises(ValueError, match=message):
            study.import_csv(csv)
        assert study.images() == []  # validated before anything is added


def test_study_csv_bad_columns_and_cli(tmp_path, images, capsys):
    with Study.create(tmp_path / "s") as study:
        with pytest.raises(ValueError, match="missing column"):
            study.import_csv(_csv(images, "file,modality\nskin0.png,skin\n"))
        with pytest.raises(ValueError, match="unknown label column"):
            study.import_csv(_csv(images, "path,modality,cancer\nskin0.png,skin,1\n"))
    csv = _csv(images, "path,modality,nevus\nskin0.png,skin,1\n")
    assert main(["study-import", str(tmp_path / "cli"), str(csv)]) == 0
    assert main(["study-info", str(tmp_path / "cli")]) == 0
    assert "skin" in capsys.readouterr().out
    bad = _csv(images, "path,modality,nevus\nskin0.png,skin,7\n")
    assert main(["study-import", str(tmp_path / "cli"), str(bad)]) == 2
    assert "row 2" in capsys.readouterr().err
