"""Suggest reuses a version's cached scores: only cases not scored yet are predicted."""

from __future__ import annotations

import json

import numpy as np

from napari_wsseg.evaluation.suggest import CACHE, cached_rank


class _Item:
    def __init__(self, i, path, mask=None):
        self.image_id, self.path, self.mask, self.modality = i, path, mask, "skin"


class _CountingMethod:
    """Maps read from the image; counts its predictions."""

    def __init__(self):
        self.calls = 0

    def predict(self, model, image):
        from napari_wsseg.methods.base import Maps

        self.calls += 1
        img = np.asarray(image.data)
        return Maps(maps={"mask_prob": img}, mask="mask_prob")


def test_cached_rank_predicts_each_case_once_per_version(tmp_path):
    import tifffile

    paths = []
    for i, level in enumerate((0.99, 0.5, 0.7)):
        arr = np.zeros((8, 8), np.float32)
        arr[2:5, 2:5] = level
        paths.append(str(tmp_path / f"c{i}.tif"))
        tifffile.imwrite(paths[-1], arr)
    version = tmp_path / "v002"
    version.mkdir()
    method = _CountingMethod()
    items = [_Item(1, paths[0]), _Item(2, paths[1])]
    first = cached_rank(version, items, loaded=(method, None))
    assert [r["image_id"] for r in first] == [2, 1] and method.calls == 2
    assert set(json.loads((version / CACHE).read_text())) == set(paths[:2])
    # a new case is scored alone; an annotated one drops out; the ranking holds
    items = [_Item(1, paths[0]), _Item(2, paths[1], mask="m.tif"), _Item(3, paths[2])]
    again = cached_rank(version, items, loaded=(method, None))
    assert [r["image_id"] for r in again] == [3, 1] and method.calls == 3
    assert again[1]["score"] == first[1]["score"]
