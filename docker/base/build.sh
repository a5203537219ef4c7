#!/usr/bin/env bash
# Builds the Python base image (default ragway/python-base:bookworm) from Debian packages, for
# machines that reach a Debian mirror and PyPI but no image registry (no `FROM python:...` pull).
# The image is what python:3.11-slim-bookworm is to docker/Dockerfile: Debian bookworm (whose
# Python is 3.11) with python3.11, venv and the CA certificates. Idempotent: installs docker.io,
# docker-compose and debootstrap when missing, starts dockerd when `docker info` fails, and skips
# the build when the image exists (FORCE=1 rebuilds it; SKIP_BASE=1 stops after Docker).
set -euo pipefail
IMAGE=${RAGWAY_BASE_IMAGE:-ragway/python-base:bookworm}
SUITE=bookworm

log() { echo "build-base: $*" >&2; }

# The mirror apt already uses here (deb822 sources first, then the one-line format).
mirror() {
  local uri=""
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '/^deb / && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list)
  fi
  echo "${DEBIAN_MIRROR:-${uri:-http://deb.debian.org/debian}}"
}

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    log "missing ${need[*]}; run as root or: sudo apt-get install -y ${need[*]}"
    exit 1
  fi
  log "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi

if ! docker info >/dev/null 2>&1; then
  log "starting dockerd (log: /var/log/dockerd.log)"
  nohup dockerd >/var/log/dockerd.log 2>&1 &
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { log "dockerd did not answer; see /var/log/dockerd.log"; exit 1; }
fi

[ "${SKIP_BASE:-0}" = 1 ] && exit 0  # Docker only (docker/build_images.sh with a registry)

if [ "${FORCE:-0}" != 1 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
  log "$IMAGE exists"
  exit 0
fi

root=$(mktemp -d /tmp/ragway-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
log "debootstrap $SUITE from $(mirror) into $root"
# minbase: essential packages and apt; passwd for the images' groupadd/useradd.
debootstrap --variant=minbase \
  --include=python3.11,python3.11-venv,python3-venv,ca-certificates,passwd \
  "$SUITE" "$root" "$(mirror)" >/tmp/ragway-debootstrap.log 2>&1 \
  || { tail -20 /tmp/ragway-debootstrap.log >&2; exit 1; }
# Updates and security fixes, as the slim image carries them.
cat >"$root/etc/apt/sources.list" <<SOURCES
deb $(mirror) $SUITE main
deb $(mirror) $SUITE-updates main
deb http://deb.debian.org/debian-security $SUITE-security main
SOURCES
# `python`/`python3` as in the python image, and no apt caches in the layer.
ln -sf /usr/bin/python3.11 "$root/usr/local/bin/python"
ln -sf /usr/bin/python3.11 "$root/usr/local/bin/python3"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/tmp/*
tar -C "$root" --numeric-owner -c . \
  | docker import \
      --change 'ENV LANG=C.UTF-8' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'CMD ["python3"]' \
      - "$IMAGE" >/dev/null
log "built $IMAGE ($(docker image inspect -f '{{.Size}}' "$IMAGE") bytes)"
