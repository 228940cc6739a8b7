"""The PACS panel and node dialog offscreen against the test Orthanc: verify, search,
series on expand, retrieve with progress (files handed to the studies panel as they come),
cancel, the listener, and the main window's PACS dock."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QCoreApplication
from PySide6.QtWidgets import QApplication

from fetal_viewer.core.net.nodes import NodeConfig, load_config, save_config
from fetal_viewer.gui.pacs.nodes import NodesDialog
from fetal_viewer.gui.pacs.panel import PacsPanel
from tests.net.conftest import OrthancServer, Phantoms, copies_of


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        QCoreApplication.processEvents()
        time.sleep(0.01)


@pytest.fixture
def config_file(orthanc: OrthancServer, tmp_path: Path) -> Path:
    path = tmp_path / "config" / "dicom-nodes.json"
    cfg = NodeConfig(local=orthanc.local()).with_node(orthanc.node()).with_node(orthanc.web_node())
    save_config(cfg, path)
    return path


@pytest.fixture
def panel(qtbot: Any, config_file: Path, tmp_path: Path) -> Iterator[PacsPanel]:
    p = PacsPanel(config_path=config_file, cache=tmp_path / "cache", inbox=tmp_path / "inbox")
    qtbot.addWidget(p)
    p.show()
    yield p
    p.shutdown()
    assert p.running_workers() == 0 and p.listener is None


def _nodes_dialog(qtbot: Any, path: Path, name: str, port: int) -> NodesDialog:
    """The nodes dialog, its form filled with node ``name`` on this host's ``port``."""
    dialog = NodesDialog(path)
    qtbot.addWidget(dialog)
    dialog.name.setText(name)
    dialog.ae.setText("ORTHANC")
    dialog.host.setText("127.0.0.1")
    dialog.port.setValue(port)
    return dialog


def test_nodes_dialog_adds_verifies_and_saves(
    qtbot: Any, orthanc: OrthancServer, tmp_path: Path
) -> None:
    path = tmp_path / "nodes.json"
    dialog = _nodes_dialog(qtbot, path, "pacs", orthanc.dicom_port)
    dialog.verify_button.click()
    wait_until(lambda: "OK in" in dialog.status.text() and dialog.verify_button.isEnabled())
    dialog.ae.setText("WRONG")
    dialog.verify_button.click()
    wait_until(lambda: "unknown called AE title" in dialog.status.text())
    dialog.ae.setText("ORTHANC")
    dialog.add_or_update()
    dialog.name.setText("bad")
    dialog.ae.setText("X" * 20)  # the field stops at 16: still valid
    dialog.host.setText("")
    dialog.add_or_update()
    assert "no valid host" in dialog.status.text()
    assert dialog.table.rowCount() == 1
    dialog.local_ae.setText("READER_1")
    dialog.accept_and_save()  # the incomplete node in the form is not dropped unsaid
    assert "not complete" in dialog.status.text() and not path.exists()
    dialog.name.setText("")
    dialog.accept_and_save()
    saved = load_config(path)
    assert [n.name for n in saved.nodes] == ["pacs"] and saved.local.ae_title == "READER_1"
    # a node filled in and verified, then OK without Add / update: saved, as on screen
    _nodes_dialog(qtbot, path, "second", orthanc.dicom_port).accept_and_save()
    assert [n.name for n in load_config(path).nodes] == ["pacs", "second"]


def test_search_expand_retrieve_and_cancel(
    qtbot: Any, panel: PacsPanel, orthanc: OrthancServer, phantoms: Phantoms, tmp_path: Path
) -> None:
    uid = phantoms.still_study()
    panel.patient_id.setText(phantoms.patients[uid])
    panel.search_button.click()
    wait_until(lambda: panel.results.topLevelItemCount() == 1)
    item = panel.results.topLevelItem(0)
    assert item is not None and item.data(0, 0x100).study_uid == uid
    assert item.text(1).startswith("P-")  # pseudonym until identities are shown
    panel.set_show_identities(True)
    assert phantoms.patients[uid] in item.text(1)
    item.setExpanded(True)
    wait_until(lambda: item.childCount() == 1)
    assert "series" in item.child(0).text(1)

    arrived: list[str] = []
    panel.paths_arrived.connect(arrived.extend)
    results: list[Any] = []
    panel.retrieved.connect(results.append)
    panel.results.setCurrentItem(item.child(0))  # a series selects its study
    assert panel.retrieve_button.isEnabled()
    panel.retrieve_button.click()
    assert panel.cancel_button.isEnabled() and not panel.retrieve_button.isEnabled()
    wait_until(lambda: bool(results) and panel.cancel_button.isEnabled() is False)
    assert results[0].complete and results[0].held == len(phantoms.studies[uid])
    assert sorted(Path(p).stem for p in arrived) == sorted(
        p.stem for p in (tmp_path / "cache" / uid).glob("*/*.dcm")
    )
    assert "Retrieved" in panel.message.text()

    # a larger study, cancelled at its first image: kept, marked, resumable
    copies = copies_of(phantoms.studies[uid][0], 30, tmp_path / "src")
    orthanc.upload(copies)
    panel.patient_id.setText("")
    panel.accession.setText(str(__import__("pydicom").dcmread(copies[0]).AccessionNumber))
    panel.search()
    wait_until(lambda: panel.results.topLevelItemCount() == 1 and panel.search_button.isEnabled())
    panel.results.setCurrentItem(panel.results.topLevelItem(0))
    panel._bridge.arrived.connect(lambda _item: panel.cancel())
    panel.retrieve()
    wait_until(lambda: not panel.cancel_button.isEnabled())
    assert "Cancelled" in panel.message.text()


def test_listener_receives_a_push(
    qtbot: Any, panel: PacsPanel, orthanc: OrthancServer, phantoms: Phantoms, tmp_path: Path
) -> None:
    arrived: list[str] = []
    panel.paths_arrived.connect(arrived.extend)
    panel.listen_button.click()
    assert panel.listener is not None and panel.listener.running
    assert "Listening as FETALVIEWER" in panel.listen_status.text()
    uid = phantoms.cine_study()
    orthanc.rest(
        "POST",
        "/modalities/fetalviewer/store",
        json={"Resources": [orthanc.study_id(uid)], "Synchronous": True},
    )
    wait_until(lambda: len(arrived) == len(phantoms.studies[uid]))
    assert Path(arrived[0]).is_relative_to(tmp_path / "inbox")
    assert "1 image(s) received, last from ORTHANC" in panel.listen_status.text()
    panel.listen_button.click()
    assert panel.listener is None and "Stopped" in panel.listen_status.text()


def test_main_window_gets_a_pacs_dock_whose_studies_open(
    make_main_window: Any,
    orthanc: OrthancServer,
    phantoms: Phantoms,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FETAL_VIEWER_CONFIG_DIR", str(tmp_path / "cfg"))
    monkeypatch.setenv("FETAL_VIEWER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("FETAL_VIEWER_DATA_DIR", str(tmp_path / "data"))
    save_config(NodeConfig(local=orthanc.local()).with_node(orthanc.node()))
    window = make_main_window()
    panel: PacsPanel = window.pacs_panel
    assert window.findChild(object, "pacsDock") is not None
    titles = [a.text() for a in window.menuBar().actions()]
    assert "&PACS" in titles
    uid = phantoms.cine_study()
    panel.patient_id.setText(phantoms.patients[uid])
    panel.search()
    wait_until(lambda: panel.results.topLevelItemCount() == 1)
    panel.results.setCurrentItem(panel.results.topLevelItem(0))
    before = len(window.browser.series_items())
    panel.retrieve()
    wait_until(lambda: len(window.browser.series_items()) == before + 1, 60)
    wait_until(lambda: not panel.cancel_button.isEnabled())
    assert QApplication.instance() is not None
    # the arrow keys move through the results while they have the focus, not the viewer
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    panel.patient_id.setText("")
    panel.search()
    wait_until(lambda: panel.results.topLevelItemCount() > 1 and panel.search_button.isEnabled())
    window.activateWindow()
    panel.results.setFocus()
    panel.results.setCurrentItem(panel.results.topLevelItem(0))
    shown = window.state.series
    QTest.keyClick(panel.results, Qt.Key.Key_Down)
    assert panel.results.currentItem() is panel.results.topLevelItem(1)
    assert window.state.series is shown
