#!/usr/bin/env bash
# Build a one-folder desktop bundle and smoke-test it offscreen.
#   packaging/build.sh [lean|full]
# lean (default, `make package`): dist/fetal-viewer/, without torch: the model runs from its
#   ONNX graph on OpenVINO or ONNX Runtime; the pytorch-grad-cam methods are not offered.
# full (`make package-full`): dist/fetal-viewer-full/, with torch, torchvision and grad-cam.
# SKIP_INSTALL=1 uses the environment as it is (no `pip install -e .[package]`).
set -euo pipefail
cd "$(dirname "$0")/.."
KIND=${1:-lean}
case "$KIND" in lean) NAME=fetal-viewer ;; full) NAME=fetal-viewer-full ;;
  *) echo "usage: $0 [lean|full]" >&2; exit 2 ;; esac
BIN=${BIN:-.venv/bin}
[ "${SKIP_INSTALL:-0}" = 1 ] || "$BIN/python" -m pip install --quiet -e '.[package]'
FETAL_VIEWER_BUNDLE=$KIND "$BIN/pyinstaller" --noconfirm --log-level WARN --distpath dist \
  --workpath "build/pyinstaller-$KIND" packaging/fetal-viewer.spec
cp packaging/fetal-viewer.desktop "dist/$NAME/"
cp resources/icons/app/fetal-viewer.svg "dist/$NAME/fetal-viewer.svg"
echo "== no library left in the bundle links one the spec dropped (objdump, as PyInstaller uses)"
missing=$(find "dist/$NAME" -type f -name '*.so*' -exec objdump -p {} + 2>/dev/null \
  | awk '$1 == "NEEDED" {print $2}' | sort -u \
  | { grep -E '^lib(gtk-3|gdk-3|gdk_pixbuf|atk|atspi|cairo|pango|epoxy|fribidi|graphite2|harfbuzz|pixman|datrie|thai|Xcomposite|Xcursor|Xdamage|Xext|Xfixes|Xi|Xinerama|Xrandr|Xrender|jpeg\.so\.62|Qt6EglFs|Qt6OpenGL)' || true; } \
  | while read -r lib; do [ -n "$(find "dist/$NAME" -name "$lib" -print -quit)" ] || echo "$lib"; done)
if [ -n "$missing" ]; then echo "the bundle needs libraries it no longer ships: $missing" >&2; exit 1; fi
echo "== the demo model's ONNX graph, named in the bundled card (exported with this torch)"
"$BIN/python" -m fetal_viewer onnx export --model "dist/$NAME/_internal/resources/models/demo/card.json"
echo "== smoke test: open the demo study offscreen, run one prediction, exit"
CACHE=$(mktemp -d)
trap 'rm -rf "$CACHE"' EXIT
QT_QPA_PLATFORM=offscreen FETAL_VIEWER_CACHE_DIR=$CACHE FETAL_VIEWER_LOG_DIR=$CACHE/logs \
  timeout 300 "dist/$NAME/fetal-viewer" --demo --smoke-test
grep -ho "Inference backend: .*" "$CACHE"/logs/*.log | tail -1
echo "== bundle size"
du -sh "dist/$NAME"
du -sh "dist/$NAME/_internal/torch" "dist/$NAME/_internal/nvidia" "dist/$NAME/_internal/openvino" 2>/dev/null || true
