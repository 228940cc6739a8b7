"""Entry script for the PyInstaller bundle: the same launcher as `fetal-viewer`."""

import multiprocessing
import sys

from fetal_viewer.__main__ import main

if __name__ == "__main__":
    multiprocessing.freeze_support()
    sys.exit(main())
