"""fetal-viewer: radiologist-assist viewer for prenatal ultrasound.

Research use only. Not for clinical use.
"""

__version__ = "0.1.0"

INTENDED_USE = "Research use only. Not for clinical use."
