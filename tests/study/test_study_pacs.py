"""Against a real Orthanc: search, retrieve into a study, predict and accept, store
the SEG back and find it there; a server dying mid-retrieval leaves no partial image."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from orthanc_server import PASSWORD

from napari_wsseg.cli import main
from napari_wsseg.io import read_image
from napari_wsseg.io.pacs import Pacs, PacsError, load_config
from napari_wsseg.study import Study
from napari_wsseg.study.pacs_import import retrieve_into_study, store_seg


def test_search_by_patient_accession_modality_and_date(orthanc):
    server, uids = orthanc
    pacs = Pacs(load_config())
    assert [h.series_uid for h in pacs.search(patient_id="P-CT")] == [uids["ct_series"]]
    (ct,) = pacs.search(accession="ACC-CT")
    assert (ct.modality, ct.n_instances, ct.description, ct.series_number) == (
        "CT",
        6,
        "Abdomen venous",
        3,
    )
    assert [h.patient_id for h in pacs.search(modality="CR")] == ["P-CR"]
    by_date = pacs.search(date="20261101-20261130")
    assert {h.patient_id for h in by_date} == {"P-CT", "P-CR"}
    assert pacs.search(date="2026-11-20")[0].series_uid == uids["cr_series"]
    assert len(pacs.search(modality="MR")) == 1  # pydicom's real MR_small
    assert pacs.search(patient_id="NOBODY") == []


def test_wrong_password_is_a_clear_error_without_secrets(orthanc, monkeypatch, capsys):
    monkeypatch.setenv("WSSEG_TEST_PACS_PASSWORD", "wrong-password")
    with pytest.raises(PacsError, match=r"PACS 'test-pacs': search failed: HTTP 401") as err:
        Pacs(load_config()).search(patient_id="P-CT")
    assert "wrong-password" not in str(err.value) and "127.0.0.1" not in str(err.value)
    assert main(["pacs", "search", "--patient", "P-CT"]) == 2
    assert "HTTP 401 (check the username / password" in capsys.readouterr().err


def test_retrieve_predict_accept_store_and_find_the_seg(orthanc, tmp_path, capsys):
    server, uids = orthanc
    labels = tmp_path / "labels.csv"
    labels.write_text(f"series_uid,pdac\n{uids['ct_series']},1\n")
    root = str(tmp_path / "study")
    assert main(["pacs", "retrieve", root, uids["ct_series"], "--labels-csv", str(labels)]) == 0
    assert main(["pacs", "retrieve", root, uids["cr_series"], "--label", "cardiomegaly=1"]) == 0
    captured = capsys.readouterr()
    assert "6/6" in captured.err and "1/1" in captured.err  # the progress bars

    with Study.open(root) as study:
        ct, cr = study.images()
        assert (ct.modality, ct.labels, cr.modality, cr.labels) == (
            "ct",
            {"pdac": 1.0},
            "xray",
            {"cardiomegaly": 1.0},
        )
        assert ct.meta["pacs"]["series_uid"] == uids["ct_series"]
        catalog = (study.root / "catalog.sqlite").read_bytes()
        assert PASSWORD.encode() not in catalog and str(server.port).encode() not in catalog
        source = read_image(uids["ct_folder"])
        image = read_image(ct.path)
        np.testing.assert_array_equal(image.data, source.data)
        assert image.translate == source.translate and image.scale == source.scale

        # Explain, headless: the method predicts, the user corrects and accepts
        import torch

        from napari_wsseg.methods import get_method

        torch.manual_seed(0)
        method = get_method("iagnet")(
            features=(4, 8, 8, 8, 8, 4), views=("axial",), gate_mask=False
        )
        maps = method.predict(method.build_model(), image)
        predicted = (maps.maps[maps.mask] > maps.threshold).astype(np.uint8)
        pred = study.save_mask(ct.id, predicted, "predicted", model_version="iagnet-random")
        corrected = predicted.copy()
        corrected[2:4, 40:70, 50:80] = 1
        vid = study.save_mask(
            ct.id,
            corrected,
            "corrected",
            author="Doe^Jane",
            parent=pred,
            model_version="iagnet-random",
        )
        pacs = Pacs(load_config())
        seg_uid = store_seg(study, pacs, vid)
        stack = np.zeros((10, 64, 64), np.uint8)
        stack[2, 10:30, 10:30] = 1
        cr_seg = store_seg(study, pacs, study.save_mask(cr.id, stack, "expert", author="Roe"))

    (found,) = pacs.search(patient_id="P-CT", modality="SEG")
    assert found.study_uid == uids["ct_study"]
    seg = pacs.client.retrieve_instance(found.study_uid, found.series_uid, seg_uid)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == uids["ct_series"]
    assert seg.ContentCreatorName == "Doe^Jane" and seg.ContentLabel == "CORRECTED"
    referenced = {
        f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        for f in seg.PerFrameFunctionalGroupsSequence
    }
    assert referenced == set(pacs.instance_uids(uids["ct_study"], uids["ct_series"]))
    (cr_hit,) = pacs.search(patient_id="P-CR", modality="SEG")
    cr_back = pacs.client.retrieve_instance(cr_hit.study_uid, cr_hit.series_uid, cr_seg)
    assert cr_back.ReferencedSeriesSequence[0].SeriesInstanceUID == uids["cr_series"]


def test_server_dying_mid_retrieval_leaves_nothing_and_a_retry_completes(
    orthanc, tmp_path, monkeypatch
):
    server, uids = orthanc
    staging = tmp_path / "tmp"
    staging.mkdir()
    monkeypatch.setenv("TMPDIR", str(staging))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(staging))
    pacs = Pacs(load_config())
    hit = pacs.series(uids["ct_series"])
    seen = []

    def die_after_two(done: int, total: int) -> None:
        seen.append(done)
        if done == 2:
            server.kill()

    with Study.create(tmp_path / "s") as study:
        with pytest.raises(PacsError, match=r"retrieving instance 3 of 6 failed"):
            retrieve_into_study(study, pacs, hit, labels={"pdac": 1}, progress=die_after_two)
        assert seen == [1, 2]
        assert study.images() == [] and study.check() == []
        assert list((study.root / "images").rglob("*")) == []
        assert list(staging.iterdir()) == []  # the download is gone too

        server.start()
        image_id = retrieve_into_study(study, pacs, hit, labels={"pdac": 1})
        rec = study.image(image_id)
        assert rec.meta["shape"][0] == 6 and study.check() == []
        np.testing.assert_array_equal(
            read_image(rec.path).data, read_image(uids["ct_folder"]).data
        )
        with pytest.raises(ValueError, match="already in the study"):
            retrieve_into_study(study, pacs, hit)
    assert all(
        pydicom.dcmread(p).SeriesInstanceUID == uids["ct_series"] for p in rec.path.iterdir()
    )


def test_cli_search_lists_series_and_store_sends_files_and_versions(orthanc, tmp_path, capsys):
    server, uids = orthanc
    assert main(["pacs", "search", "--modality", "CR"]) == 0
    out = capsys.readouterr()
    assert out.out.split("\t")[0] == "P-CR" and uids["cr_series"] in out.out
    assert "1 series" in out.err
    root = str(tmp_path / "s")
    assert main(["pacs", "retrieve", root, uids["cr_series"], "--modality", "xray"]) == 0
    with Study.open(root) as study:
        (rec,) = study.images()
        stack = np.zeros((10, 64, 64), np.uint8)
        stack[4, 20:40, 20:40] = 1
        vid = study.save_mask(rec.id, stack, "expert", author="Roe")
    seg = str(tmp_path / "cr_seg.dcm")
    assert main(["seg", "export", root, seg, "--version", str(vid)]) == 0
    assert main(["pacs", "store", seg, "--study", root, "--version", str(vid)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2].startswith(f"mask version {vid}: stored as SOP ")
    assert lines[-1].startswith(f"{seg}: stored as SOP ")
    assert len(Pacs(load_config()).search(patient_id="P-CR", modality="SEG")) == 2  # a series each
    assert len(server.rest("GET", "/instances").json()) == 9 + 2  # loaded + the two SEGs
