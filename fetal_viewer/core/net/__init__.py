"""DICOM networking: nodes, query/retrieve, the storage listener, DICOMweb, and AI results
sent back as DICOM. No Qt here: the CLI (``fetal-viewer pacs``) and the GUI call the same
use cases in :mod:`fetal_viewer.core.net.pacs`.

Public API:

* :mod:`~fetal_viewer.core.net.nodes`: ``Node``, ``LocalAE``, ``NodeConfig``,
  ``load_config()`` / ``save_config()`` (``<config dir>/dicom-nodes.json``);
* :mod:`~fetal_viewer.core.net.pacs`: ``verify``, ``find_studies``, ``find_series``,
  ``retrieve_study`` (C-GET, C-MOVE or WADO-RS, resumable), ``send`` (C-STORE or STOW-RS);
* :mod:`~fetal_viewer.core.net.listener`: ``Listener`` (storage SCP);
* :mod:`~fetal_viewer.core.net.storage`: ``StudyStore`` (atomic, never overwrites),
  ``TransferState``;
* :mod:`~fetal_viewer.core.net.results`: the AI result as a Comprehensive SR and secondary
  captures.
"""
