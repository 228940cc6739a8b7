#!/usr/bin/env bash
# Build the one-folder desktop bundle (dist/fetal-viewer/) and smoke-test it offscreen.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
"$BIN/python" -m pip install --quiet -e '.[package]'
"$BIN/pyinstaller" --noconfirm --log-level WARN --distpath dist --workpath build/pyinstaller \
  packaging/fetal-viewer.spec
cp packaging/fetal-viewer.desktop dist/fetal-viewer/
cp resources/icons/app/fetal-viewer.svg dist/fetal-viewer/fetal-viewer.svg
echo "== smoke test: open the demo study offscreen, run one prediction, exit"
QT_QPA_PLATFORM=offscreen timeout 300 dist/fetal-viewer/fetal-viewer --demo --smoke-test
echo "== bundle size"
du -sh dist/fetal-viewer
du -sh dist/fetal-viewer/_internal/torch dist/fetal-viewer/_internal/nvidia 2>/dev/null || true
