"""napari-wsseg: weakly supervised segmentation for medical images in napari.

Importing the package is cheap: no torch, no Qt. Models load where they run.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
