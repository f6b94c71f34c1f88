"""The npe2 manifest validates, and its reader / writer commands resolve to our adapters."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

from npe2 import PluginManifest

from napari_wsseg._reader import get_reader
from napari_wsseg._writer import write_labels


def test_npe2_validate_passes():
    npe2 = Path(sys.executable).with_name("npe2")
    result = subprocess.run(
        [str(npe2), "validate", "napari-wsseg"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout.lower()


def test_reader_and_writer_commands_resolve_to_the_adapters():
    manifest = PluginManifest.from_distribution("napari-wsseg")
    commands = {c.id: c.python_name for c in manifest.contributions.commands}
    assert manifest.contributions.readers[0].command == "napari-wsseg.get_reader"
    assert manifest.contributions.writers[0].command == "napari-wsseg.write_labels"
    expected = {"napari-wsseg.get_reader": get_reader, "napari-wsseg.write_labels": write_labels}
    for command_id, function in expected.items():
        module, attr = commands[command_id].split(":")
        assert getattr(importlib.import_module(module), attr) is function
