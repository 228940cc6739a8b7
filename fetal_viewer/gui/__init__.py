"""Qt desktop face of fetal-viewer: a thin layer over fetal_viewer.core."""
