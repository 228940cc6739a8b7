import logging
from pathlib import Path

from fetal_viewer.core.redact import RedactingFormatter, path_token, redact_paths


def test_paths_and_file_names_become_stable_tokens() -> None:
    text = (
        "load problem: /data/export/Okonkwo_Ada_MRN-7719/Okonkwo_19790923_cine.dcm: bad header; "
        r"also C:\PACS\Smith^John\IM0001.dcm and Okonkwo_damaged.dcm"
    )
    out = redact_paths(text)
    for phi in ("Okonkwo", "7719", "19790923", "Smith", "IM0001"):
        assert phi not in out
    assert "load problem:" in out and "bad header" in out
    assert path_token("/a/b.dcm") == path_token("/a/b.dcm") != path_token("/a/c.dcm")
    assert path_token("/a/b.dcm").endswith(".dcm>")
    assert redact_paths("3 of 4 frames, 12.5 % done") == "3 of 4 frames, 12.5 % done"


def test_log_filter_redacts_message_and_traceback(tmp_path: Path) -> None:
    log_file = tmp_path / "app.log"
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(RedactingFormatter())
    log = logging.getLogger("fetal_viewer.test_redact")
    log.addHandler(handler)
    try:
        try:
            raise OSError("cannot read /home/u/DOE_JANE/scan.dcm")
        except OSError:
            log.exception("opening %s failed", "/home/u/DOE_JANE/scan.dcm")
    finally:
        log.removeHandler(handler)
        handler.close()
    text = log_file.read_text(encoding="utf-8")
    assert "DOE_JANE" not in text and "opening <file" in text and "OSError" in text


def test_versions_module_names_and_code_paths_are_kept() -> None:
    import fetal_viewer.core.redact as module

    text = f'torch 2.14.1 in File "{module.__file__}", line 3, in fetal_viewer.core'
    assert redact_paths(text) == text
