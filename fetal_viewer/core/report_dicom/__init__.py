"""The AI result of a study as DICOM objects a PACS keeps: one Comprehensive SR and one
secondary capture per key frame.

* The SR is a TID 1500 Measurement Report (highdicom): the observer is the app (device)
  and the subject the fetus; one measurement group for the study (the aggregated
  per-class probabilities, the most probable class) and one per analysed frame, each
  referencing its source instance and frame number, with the per-class probabilities,
  the domain guard's score and verdict where the model has one, and the algorithm
  (model name, version, weights sha256). A "Qualitative Evaluations" container carries
  the intended use as text: research use only, not for clinical use.
* Each secondary capture is the key frame with the heatmap of the study's most probable
  class blended over it (:func:`fetal_viewer.core.cam.overlay.blend`) and a caption band
  below it naming class, probability, model and intended use; ``ImageType``
  DERIVED\\SECONDARY and a Source Image Sequence pointing at the frame it came from.

Both go into new series of the source study (same patient and study), so a PACS files
them beside the images. Class concepts use the private coding scheme
:data:`~fetal_viewer.core.report_dicom.sr.SCHEME` ("Probability of <class>"); the rest
are DCM, SCT and UCUM codes.

* :mod:`~fetal_viewer.core.report_dicom.analysis`: ``analyse_study`` runs the model over
  a study (``StudyAnalysis``, ``FrameResult``, ``KeyFrame``);
* :mod:`~fetal_viewer.core.report_dicom.sr`: ``build_sr`` and ``read_sr``;
* :mod:`~fetal_viewer.core.report_dicom.capture`: ``build_capture``;
* :mod:`~fetal_viewer.core.report_dicom.objects`: ``read_sources``, ``build_results``
  (both kinds for a study) and ``write_results``.
"""

from fetal_viewer.core.io.study import APP_MANUFACTURER

MANUFACTURER = APP_MANUFACTURER
