#!/usr/bin/env bash
# Debian/Ubuntu system libraries Qt needs even offscreen (fonts, xkb, EGL/GL, dbus), and the
# programs the DICOM network tests run: Orthanc with its DICOMweb plugin (a real PACS on
# loopback ports) and dicom3tools (dciodvfy checks the SR and secondary captures we write).
# Installs only what is missing, and only when run as root with apt-get available.
set -u
need=()
for spec in libegl1:libEGL.so.1 libgl1:libGL.so.1 libxkbcommon0:libxkbcommon.so.0 \
            libfontconfig1:libfontconfig.so.1 libdbus-1-3:libdbus-1.so.3 libglib2.0-0:libglib-2.0.so.0; do
  pkg=${spec%%:*}; lib=${spec#*:}
  ldconfig -p 2>/dev/null | grep -q "$lib" || need+=("$pkg")
done
fc-list >/dev/null 2>&1 && [ -n "$(fc-list 2>/dev/null | head -1)" ] || need+=(fonts-dejavu-core fontconfig)
{ [ -x /usr/sbin/Orthanc ] || command -v Orthanc; } >/dev/null || need+=(orthanc)
[ -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || need+=(orthanc-dicomweb)
command -v dciodvfy >/dev/null || need+=(dicom3tools)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing system packages for Qt and the DICOM network tests: ${need[*]}"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "warning: Qt or the DICOM network tests may need these system packages: ${need[*]} (install them with your package manager)" >&2
  fi
fi
exit 0
