from fetal_viewer.core.about import COMPONENTS, components


def test_components_report_real_versions_and_licences() -> None:
    found = {c.name: c for c in components()}
    # every runtime dependency is installed in the test environment
    assert set(found) == set(COMPONENTS)
    assert found["torch"].version.startswith("2.14.1")
    assert "MIT" in found["pydicom"].licence
    # copyleft components must be visible to whoever redistributes a bundle
    assert "GPL" in found["pylibjpeg-libjpeg"].licence
    assert "LGPL" in found["PySide6-Essentials"].licence
