"""Log what vispy sends to GL before each draw, to find what a crashing draw was doing.

Issue 13's segfault in ``glDrawArrays`` (see ``scripts/repro_switch_crash.py``) kills
the process, so this writes each line to ``--log`` unbuffered as it goes: every GLIR
command (uniforms with their values), the visual drawn and its buffers and textures
(flagged ``DEAD-VBO`` / ``DEAD-TEX`` when vispy already deleted one), the vertex
attribute arrays enabled in GL before the draw, the framebuffer bound, the docks'
widths at each frame, each ``processEvents`` call (flagged when inside paintGL or
resizeGL) and each resize. It runs another script under it::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/trace_gl.py \\
        --log /tmp/draws.log scripts/repro_switch_crash.py --cases skin,slide --switches 6

The last lines of the log are the crashing draw. Debugging aid only: slow (GL state
queries on every draw), never imported by the package.
"""

from __future__ import annotations

import os
import runpy
import sys
import threading

import numpy as np


def _short(value) -> str:
    if isinstance(value, np.ndarray):
        return f"arr{value.shape}{value.dtype}"
    text = repr(value)
    return text[:40] + "..." if len(text) > 40 else text


def install(log_path: str) -> None:
    """Patch vispy's GLIR parser, programs, buffers and textures and Qt's processEvents."""
    import vispy
    from qtpy.QtWidgets import QApplication, QDockWidget
    from vispy.gloo import gl, glir

    vispy.use(app="pyqt6")
    from vispy.app.backends import (
        _pyqt6,  # noqa: F401  (sets the Qt backend up)
        _qt,
    )

    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    live: dict[str, dict[int, object]] = {"buf": {}, "tex": {}}
    depth = {"paint": 0, "resize": 0}

    def log(line: str) -> None:
        os.write(fd, (line + "\n").encode())

    def track(cls, kind: str) -> None:
        create, delete = cls.create, cls.delete

        def created(self):
            create(self)
            live[kind][self._handle] = self

        def deleted(self):
            log(f"  delete {kind} {self._handle}")
            live[kind].pop(self._handle, None)
            delete(self)

        cls.create, cls.delete = created, deleted

    track(glir.GlirBuffer, "buf")
    track(glir.GlirTexture, "tex")

    parse = glir.GlirParser._parse

    def parsed(self, command):
        if command[0] == "CURRENT":
            for win in QApplication.topLevelWidgets():
                if win.isVisible() and win.inherits("QMainWindow"):
                    docks = [
                        (d.windowTitle()[:18], d.width())
                        for d in win.findChildren(QDockWidget)
                        if d.isVisible()
                    ]
                    log(f"  window {win.width()}x{win.height()} docks {docks}")
        args = " ".join(_short(a) for a in command[1:])
        log(f"  GLIR {command[0]} {args} [{threading.current_thread().name}]")
        return parse(self, command)

    glir.GlirParser._parse = parsed

    draw = glir.GlirProgram.draw

    def drawn(self, mode, selection, instances=1):
        notes, attrs, texs = [], [], []
        for name, (vbo, _loc, _f, _args, _d) in self._attributes.items():
            if vbo:
                buf = live["buf"].get(vbo)
                notes += [] if buf is not None else [f"DEAD-VBO {name}"]
                size = getattr(buf, "_buffer_size", "?")
                attrs.append(f"{name}:{vbo}:{size}B")
        for name, (_t, handle, _u) in self._samplers.items():
            tex = live["tex"].get(handle)
            notes += [] if tex is not None else [f"DEAD-TEX {name}"]
            texs.append(f"{name}:{handle}:{getattr(tex, '_shape_formats', '?')}")
        enabled = [
            i for i in range(8) if gl.glGetVertexAttrib(i, gl.GL_VERTEX_ATTRIB_ARRAY_ENABLED)
        ]
        fbo = gl.glGetParameter(gl.GL_FRAMEBUFFER_BINDING)
        log(
            f"DRAW prog {self._handle} {selection} attrs {attrs} tex {texs} "
            f"enabled {enabled} fbo {fbo} {' '.join(notes)}"
        )
        return draw(self, mode, selection, instances)

    glir.GlirProgram.draw = drawn

    process = QApplication.processEvents

    def processed(*args, **kwargs):
        caller = sys._getframe(1)
        where = f"{caller.f_code.co_filename.split('site-packages/')[-1]}:{caller.f_lineno}"
        log(f"  processEvents from {where} in paint {depth['paint']} resize {depth['resize']}")
        return process(*args, **kwargs)

    QApplication.processEvents = staticmethod(processed)
    for meth, key in (("paintGL", "paint"), ("resizeGL", "resize")):
        orig = getattr(_qt.CanvasBackendDesktop, meth)

        def wrapped(self, *args, _orig=orig, _key=key, _meth=meth):
            depth[_key] += 1
            log(f"  >> {_meth} {args}")
            try:
                return _orig(self, *args)
            finally:
                depth[_key] -= 1

        setattr(_qt.CanvasBackendDesktop, meth, wrapped)


def main() -> None:
    if len(sys.argv) < 4 or sys.argv[1] != "--log":
        sys.exit(__doc__)
    install(sys.argv[2])
    sys.argv = sys.argv[3:]
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
