#!/usr/bin/env bash
# Install the Debian packages the tests and tools call for real: dcmtk (storescu, findscu, dsrdump,
# ...), dicom3tools (dciodvfy), Orthanc with its DICOMweb plugin (the PACS in the tests), and
# Chromium (the worklist page is tested in a real headless browser) and PostgreSQL (the store's
# scale-out database; tests start private clusters). Idempotent: installs only what
# is missing. Orthanc's own system service is disabled: the tests start private instances.
set -euo pipefail
need=()
command -v dsrdump >/dev/null 2>&1 || need+=(dcmtk)
command -v dciodvfy >/dev/null 2>&1 || need+=(dicom3tools)
command -v Orthanc >/dev/null 2>&1 || need+=(orthanc)
[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || need+=(orthanc-dicomweb)
command -v chromium >/dev/null 2>&1 || need+=(chromium fonts-dejavu-core)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "need root (or sudo) to apt-get install ${need[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
# The package starts a system Orthanc listening on 0.0.0.0:4242/8042; nothing here needs it.
$SUDO systemctl disable --now orthanc >/dev/null 2>&1 || true
$SUDO pkill -x Orthanc >/dev/null 2>&1 || true
$SUDO systemctl disable --now postgresql >/dev/null 2>&1 || true
