"""Node settings: validation with what/why/fix, the JSON file, and the storage folder's
guarantees (atomic, never overwritten, conflicts kept aside)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fetal_viewer.core.net.nodes import LocalAE, Node, NodeConfig, load_config, save_config
from fetal_viewer.core.net.pacs import StudyQuery, parse_date_range
from fetal_viewer.core.net.storage import Outcome, StudyStore
from fetal_viewer.errors import NetworkError


def test_settings_round_trip_through_the_config_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FETAL_VIEWER_CONFIG_DIR", str(tmp_path / "cfg"))
    assert load_config() == NodeConfig()  # no file yet: defaults
    cfg = NodeConfig(local=LocalAE("US_READER", 11113, "127.0.0.1", ("US1",)))
    cfg = cfg.with_node(Node("pacs", " ORTHANC ", "10.0.0.5", 4242, timeout_s=5))
    cfg = cfg.with_node(Node("web", url="https://pacs.example/dicom-web/"))
    path = save_config(cfg)
    assert path == tmp_path / "cfg" / "dicom-nodes.json"
    back = load_config()
    assert back == cfg
    assert back.get("pacs").ae_title == "ORTHANC"  # stripped
    assert back.get("web").url == "https://pacs.example/dicom-web"
    assert back.allowed_callers() == {"ORTHANC", "US1"}
    assert back.without_node("pacs").allowed_callers() == {"US1"}
    with pytest.raises(NetworkError, match="exists already"):
        back.with_node(Node("pacs", "X", "h", 1))
    with pytest.raises(NetworkError, match="No DICOM node is named 'nope'") as exc:
        back.get("nope")
    assert "pacs, web" in exc.value.why


@pytest.mark.parametrize(
    ("node", "message"),
    [
        (Node("p", "A" * 17, "h", 104), "17 characters"),
        (Node("p", "BAD\\AE", "h", 104), "contains"),
        (Node("p", "", "h", 104), "empty"),
        (Node("p", "PACS", "h", 0), "not a valid port"),
        (Node("p", "PACS", "h", 70000), "not a valid port"),
        (Node("p", "PACS", "", 104), "no valid host"),
        (Node("bad name!", "PACS", "h", 104), "not a valid node name"),
        (Node("p", url="ftp://x"), "not a DICOMweb URL"),
        (Node("p", "PACS", "h", 104, url="http://x"), "both a URL"),
        (Node("p", "PACS", "h", 104, timeout_s=0), "out of range"),
    ],
)
def test_bad_nodes_are_refused_with_a_reason(node: Node, message: str) -> None:
    with pytest.raises(NetworkError, match=message) as exc:
        node.checked()
    assert exc.value.fix or exc.value.why


def test_a_damaged_settings_file_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "dicom-nodes.json"
    path.write_text("{ not json")
    with pytest.raises(NetworkError, match="cannot be read") as exc:
        load_config(path)
    assert exc.value.path == str(path)
    path.write_text('{"nodes": [{"name": "p", "ae_title": "P", "host": "h", "port": "x"}]}')
    with pytest.raises(NetworkError, match="not a valid port of node p"):
        load_config(path)
    path.write_text(
        '{"nodes": [{"name": "p", "url": "http://a"}, {"name": "p", "url": "http://b"}]}'
    )
    with pytest.raises(NetworkError, match="used twice"):
        load_config(path)


def test_query_identifiers_and_date_ranges() -> None:
    import datetime as dt

    assert parse_date_range("20240101-20240131") == (dt.date(2024, 1, 1), dt.date(2024, 1, 31))
    assert parse_date_range("2024-01-01-") == (dt.date(2024, 1, 1), None)
    assert parse_date_range("-20240131") == (None, dt.date(2024, 1, 31))
    assert parse_date_range("20240105") == (dt.date(2024, 1, 5), dt.date(2024, 1, 5))
    for bad in ("yesterday", "20241301", "20240201-20240101", ""):
        with pytest.raises(NetworkError):
            parse_date_range(bad)
    q = StudyQuery(patient_name="doe", date_from=dt.date(2024, 1, 1), modality="us")
    ds = q.identifier()
    assert ds.QueryRetrieveLevel == "STUDY"
    assert ds.PatientName == "*doe*"
    assert ds.StudyDate == "20240101-"
    assert ds.ModalitiesInStudy == "US"
    assert "NumberOfStudyRelatedInstances" in ds
    assert StudyQuery(patient_name="Do?^J*").name_pattern() == "Do?^J*"
    assert q.filters() == {
        "PatientName": "*doe*",
        "StudyDate": "20240101-",
        "ModalitiesInStudy": "US",
    }


def test_store_never_overwrites_and_keeps_a_differing_copy(tmp_path: Path) -> None:
    store = StudyStore(tmp_path)
    first = store.write("1.2.3", "1.2.3.4", "1.2.3.4.5", b"A" * 100)
    assert first.outcome is Outcome.STORED
    assert first.path.read_bytes() == b"A" * 100
    again = store.write("1.2.3", "1.2.3.4", "1.2.3.4.5", b"A" * 100)
    assert again.outcome is Outcome.DUPLICATE
    other = store.write("1.2.3", "1.2.3.4", "1.2.3.4.5", b"B" * 100)
    assert other.outcome is Outcome.CONFLICT
    assert first.path.read_bytes() == b"A" * 100  # the held one is untouched
    assert other.path.parent.name == ".conflicts" and other.path.read_bytes() == b"B" * 100
    assert store.held("1.2.3") == {"1.2.3.4.5"}
    assert not list((tmp_path / ".partial").iterdir())  # no temporary left behind
    for bad in ("../../etc", "1.2.x", "1." * 40):
        with pytest.raises(ValueError, match="not a valid UID"):
            store.write("1.2.3", "1.2.3.4", bad, b"x")
