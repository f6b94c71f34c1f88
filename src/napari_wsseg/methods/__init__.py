"""The seed methods, one package each, found by name without importing torch.

Only registered names resolve: the package's own methods (``METHODS``), methods added
in this process with :func:`register_method`, methods installed through the entry-point
group ``napari_wsseg.methods`` (a package the user chose to install), and the
``NAPARI_WSSEG_METHODS`` environment variable (``name=module:Class;...``, set by the
user for the processes they start). A name read from a file (a model folder's
``info.json``, a job file) is looked up in that registry and never imported as a
module path, so opening someone's model folder cannot run code the user did not
install.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from napari_wsseg.methods.base import Method

# name -> module; each module defines ``METHOD`` (a Method subclass).
METHODS: dict[str, str] = {
    "iagnet": "napari_wsseg.methods.iagnet",
    "glam": "napari_wsseg.methods.glam",
    "distill": "napari_wsseg.methods.distill",
    "chexseg": "napari_wsseg.methods.chexseg",
    "manifold": "napari_wsseg.methods.manifold",
}

# The modality each method works on (kept here so the dock can filter without torch).
METHOD_MODALITY: dict[str, str] = {
    "iagnet": "ct",
    "glam": "mammo",
    "distill": "slide",
    "chexseg": "xray",
    "manifold": "skin",
}

ENTRY_POINT_GROUP = "napari_wsseg.methods"
ENV_VAR = "NAPARI_WSSEG_METHODS"

# Methods registered in this process: name -> class, or "module:attr" to import lazily.
_REGISTERED: dict[str, Any] = {}


class UnknownMethodError(KeyError):
    """A method name that is not registered; the message says which are."""

    def __str__(self) -> str:  # KeyError quotes its message; this one reads as text
        return str(self.args[0]) if self.args else ""


def register_method(name: str, target: Any) -> None:
    """Register a method class (or a ``"module:Class"`` string) under ``name``.

    This is how code the user runs (a plugin, a test) adds a method; files never can.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"method name must be an identifier, got {name!r}")
    if name in METHODS:
        raise ValueError(f"method name {name!r} is taken by a built-in method")
    _REGISTERED[name] = target


def unregister_method(name: str) -> None:
    """Forget a method registered with :func:`register_method` (nothing if unknown)."""
    _REGISTERED.pop(name, None)


def _env_methods() -> dict[str, str]:
    out: dict[str, str] = {}
    for part in os.environ.get(ENV_VAR, "").replace(os.pathsep, ";").split(";"):
        name, eq, target = part.strip().partition("=")
        if eq and name.strip() and target.strip():
            out[name.strip()] = target.strip()
    return out


def _entry_points() -> dict[str, Any]:
    from importlib.metadata import entry_points

    try:
        return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    except Exception:  # a broken distribution's metadata must not hide the built-ins
        return {}


def registered_names() -> list[str]:
    """Every name :func:`get_method` resolves."""
    names = set(METHODS) | set(_REGISTERED) | set(_env_methods()) | set(_entry_points())
    return sorted(names)


def _import_target(name: str, target: str) -> Any:
    mod, _, attr = target.partition(":")
    try:
        module = importlib.import_module(mod)
    except ImportError as err:
        raise UnknownMethodError(
            f"method {name!r} is registered as {target!r}, which does not import ({err})"
        ) from None
    try:
        return getattr(module, attr or "METHOD")
    except AttributeError:
        raise UnknownMethodError(
            f"method {name!r} is registered as {target!r}: {mod} defines no {attr or 'METHOD'}"
        ) from None


def get_method(name: str) -> type[Method]:
    """The Method class registered under ``name``; a clear error for any other name.

    Module paths (``package.module``, ``module:Class``) are not imported: register such
    a method first (:func:`register_method`, the entry-point group, or the environment
    variable).
    """
    if not isinstance(name, str) or not name:
        raise UnknownMethodError(f"method name must be a non-empty string, got {name!r}")
    if name in METHODS:
        return importlib.import_module(METHODS[name]).METHOD
    if name in _REGISTERED:
        target = _REGISTERED[name]
        return _import_target(name, target) if isinstance(target, str) else target
    env = _env_methods()
    if name in env:
        return _import_target(name, env[name])
    eps = _entry_points()
    if name in eps:
        try:
            return eps[name].load()
        except Exception as err:
            raise UnknownMethodError(
                f"method {name!r} (entry point of {ENTRY_POINT_GROUP}) does not load ({err})"
            ) from None
    hint = ""
    if "." in name or ":" in name:
        hint = (
            " (module paths are not imported: register the method with "
            f"register_method, the {ENTRY_POINT_GROUP!r} entry-point group or {ENV_VAR})"
        )
    raise UnknownMethodError(
        f"unknown method {name!r}{hint}; known: {', '.join(registered_names())}"
    )


def available_methods() -> list[str]:
    """Registered methods whose module imports (a method in progress is left out)."""
    out = []
    for name, mod in METHODS.items():
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as err:
            if err.name != mod:
                raise
            continue
        out.append(name)
    return out
