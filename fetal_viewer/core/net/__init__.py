"""DICOM networking: nodes, query/retrieve, the storage listener and DICOMweb. No Qt here:
the CLI (``fetal-viewer pacs``) and the GUI call the same use cases in
:mod:`fetal_viewer.core.net.pacs` and :mod:`fetal_viewer.core.net.retrieve`. The AI result
as DICOM objects is :mod:`fetal_viewer.core.report_dicom` (a layer up: it uses the model
and CAM).

Public API:

* :mod:`~fetal_viewer.core.net.nodes`: ``Node``, ``LocalAE``, ``NodeConfig``,
  ``load_config()`` / ``save_config()`` (``<config dir>/dicom-nodes.json``);
* :mod:`~fetal_viewer.core.net.pacs`: ``verify``, ``find_studies``, ``find_series``,
  ``send`` (C-STORE or STOW-RS);
* :mod:`~fetal_viewer.core.net.retrieve`: ``retrieve_study`` (C-GET, C-MOVE or WADO-RS,
  resumable);
* :mod:`~fetal_viewer.core.net.listener`: ``Listener`` (storage SCP);
* :mod:`~fetal_viewer.core.net.storage`: ``StudyStore`` (atomic, never overwrites),
  ``TransferState``.
"""
