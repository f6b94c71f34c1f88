"""The distill method package: ``METHOD`` is its :class:`~napari_wsseg.methods.base.Method`."""

from napari_wsseg.methods.distill.method import METHOD

__all__ = ["METHOD"]
