"""What every reader returns: pixels (or a lazy pyramid) plus physical metadata."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MODALITIES = ("ct", "mammo", "slide", "xray", "skin")


class InputError(ValueError):
    """Bad input at an edge (a file, a folder, a value handed to the study): the message
    names the file (or the object) and says what is wrong with it."""

    def __init__(self, path: Any, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self) -> tuple:  # picklable across processes with its two fields
        return (type(self), (self.path, self.problem))


class ImageReadError(InputError):
    """A file could not be read; the message names the file and the problem."""


@dataclass
class ImageData:
    """An image as the floors above see it.

    ``data`` is an array (Z, Y, X) for CT, (Y, X) or (Y, X, 3) for 2D images, or a
    list of lazy arrays (finest first) for a multiscale slide. ``scale`` is the
    pixel spacing in mm (microns for slides) per spatial axis, ``translate`` the
    origin of the first pixel in the same unit.
    """

    data: Any
    modality: str
    scale: tuple[float, ...]
    translate: tuple[float, ...] = ()
    contrast_limits: tuple[float, float] | None = None
    rgb: bool = False
    multiscale: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """Shape of the spatial axes of the finest level (channels dropped)."""
        arr = self.data[0] if self.multiscale else self.data
        shape = tuple(int(s) for s in arr.shape)
        return shape[:-1] if self.rgb else shape

    @property
    def ndim(self) -> int:
        return len(self.spatial_shape)

    def layer_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``viewer.add_image`` (napari LayerData style)."""
        kw: dict[str, Any] = {
            "scale": self.scale,
            "rgb": self.rgb,
            "multiscale": self.multiscale,
            "metadata": {"modality": self.modality, **self.meta},
        }
        if self.translate:
            kw["translate"] = self.translate
        if self.contrast_limits is not None and not self.rgb:
            kw["contrast_limits"] = list(self.contrast_limits)
        return kw
