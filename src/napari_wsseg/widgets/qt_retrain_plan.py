"""The Retrain dock's plan: the version to start from, the preset, the stages to run,
the settings offered and the estimate, mixed into :class:`QtRetrain`."""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QListWidgetItem

from napari_wsseg.methods import METHOD_MODALITY
from napari_wsseg.widgets import _case, _retrain, qt_workers

SCRATCH = "new model from scratch"


class PlanMixin:
    """Planning part of the Retrain dock (uses its widgets: ``parent_box``, ``preset``,
    ``stages``, ``settings``, ``eta``, ``steps``, ``device``, ``method``)."""

    def _explain_selection(self) -> dict | None:
        """The version selected in the Explain dock of this viewer, if there is one."""
        from napari_wsseg.widgets.qt_explain import QtExplain

        docks = [
            w for w in getattr(self.viewer.window, "dock_widgets", {}).values()
            if isinstance(w, QtExplain)
        ]  # fmt: skip
        for dock in docks:
            entry = dock.selected()
            if entry is not None and entry["method"] == self.method.currentText():
                return entry
        return None

    def refresh_parents(self) -> None:
        """List the method's versions to start from; select Explain's choice, else the
        current (promoted) version; "new model from scratch" last."""
        from napari_wsseg.widgets import _explain

        case = _case.current_case(self.viewer)
        method = self.method.currentText()
        entries = []
        if case is not None:
            entries = [
                e
                for e in _explain.model_versions(case["study"], METHOD_MODALITY[method])
                if e["method"] == method
            ]
        pick = self._explain_selection() or _explain.current_entry(entries, method)
        self.parent_box.blockSignals(True)
        self.parent_box.clear()
        for e in entries:
            self.parent_box.addItem(f"fine-tune {e['title']}", e["path"])
        self.parent_box.addItem(SCRATCH, "")
        paths = [e["path"] for e in entries]
        self.parent_box.setCurrentIndex(paths.index(pick["path"]) if pick in entries else 0)
        self.parent_box.blockSignals(False)
        self._replan()

    def parent_path(self) -> str:
        """The version the job fine-tunes ("" for a new model from scratch)."""
        return self.parent_box.currentData() or ""

    def set_parent(self, path: str) -> None:
        """Select the version to fine-tune ("" = from scratch)."""
        idx = self.parent_box.findData(path)
        if idx < 0:
            raise KeyError(f"no model version {path!r} to start from")
        self.parent_box.setCurrentIndex(idx)

    def _replan(self) -> None:
        self.settings.setRowCount(0)
        self.stages.clear()
        self._plan = None
        self.eta.setText("planning…")
        args = (self.parent_path(), self.method.currentText(), self.preset.currentText())
        worker = qt_workers.build(self, _retrain.plan, *args)  # ends with the dock
        worker.returned.connect(lambda p, a=args: self._fill_plan(a, p))
        worker.errored.connect(lambda err: self.status.setText(f"cannot plan: {err}"))
        worker.start()

    def _fill_plan(self, args: tuple, plan: dict) -> None:
        if args != (self.parent_path(), self.method.currentText(), self.preset.currentText()):
            return  # superseded by a newer choice
        self._plan = plan
        self.stages.blockSignals(True)
        for name in plan["stages"]:
            item = QListWidgetItem(name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            run = plan["steps"].get(name, 1) != 0
            item.setCheckState(Qt.CheckState.Checked if run else Qt.CheckState.Unchecked)
            self.stages.addItem(item)
        self.stages.blockSignals(False)
        self.settings_label.setText(
            "training length (the architecture is the parent's):"
            if args[0]
            else "settings of the new model (preset values):"
        )
        self._fill_settings(args[1], plan["settings"])
        self._show_eta()

    def run_stages(self) -> list[str]:
        """The checked stages (the others keep the parent's weights)."""
        return [
            self.stages.item(i).text()
            for i in range(self.stages.count())
            if self.stages.item(i).checkState() == Qt.CheckState.Checked
        ]

    def set_stages(self, names: list[str]) -> None:
        for i in range(self.stages.count()):
            item = self.stages.item(i)
            on = item.text() in names
            item.setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)

    def _show_eta(self) -> None:
        if self._plan is None:
            return
        self.eta.setText(
            _retrain.eta_text(
                self._plan, self.run_stages(), self.steps.value() or None,
                self.device.currentText(),
            )
        )  # fmt: skip

    def _changed_from_paper(self) -> set[str]:
        """Keys of the settings table that differ from the paper's defaults."""
        paper = (self._plan or {}).get("paper", {})
        out = set()
        for r in range(self.settings.rowCount()):
            key, text = self.settings.item(r, 0).text(), self.settings.item(r, 1).text()
            if key not in paper or text != str(paper[key]):
                out.add(key)
        return out
