#!/usr/bin/env bash
# System packages the tests need (Debian/Ubuntu): GStreamer's RTSP server (with the decoder and
# x264 encoder its test pipelines use) for the RTSP tests, Prometheus (promtool, and a real
# scrape), Chromium for the live-view test, labelme-examples (real labelled images) for the
# dataset and training tests, mosquitto (MQTT events), python3-venv for `make venv`, and Docker with debootstrap (a base
# image without a registry) and docker-compose for deploy/. Installs only what is missing.
set -euo pipefail
pkgs=(
  python3-venv python3-gi gir1.2-gst-rtsp-server-1.0
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly gstreamer1.0-libav
  prometheus chromium labelme-examples
  mosquitto  # a real MQTT broker for the events tests (tests/integration/test_events.py)
  docker.io debootstrap docker-compose  # the CPU image built and run (tests/integration/test_docker.py), compose.yaml checked
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing system packages: ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then sudo=(); elif command -v sudo >/dev/null; then sudo=(sudo); else
  echo "install-system-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
