#!/usr/bin/env bash
# `make images`: builds the gateway, retrieval and model-cpu images from docker/Dockerfile with the
# classic builder, and prints each image's size and build time.
#
# Where an image registry answers, the base is python:3.11-slim-bookworm. Where none does, the base
# is built from Debian packages first (docker/base/build.sh), and so are the third-party servers the
# compose stack needs (docker/offline/Dockerfile: PostgreSQL, Redis, nginx, Milvus; used by
# docker-compose.offline.yml). pip inside the builds gets the host's CA bundle and, when the
# PyTorch CPU index is unreachable, torch's +cpu wheel from the host's wheel folder (docker/pip/).
#
# Environment: PYTHON_IMAGE (skip the detection), RAGWAY_IMAGE_PREFIX (ragway),
# RAGWAY_IMAGE_TAG (latest), TARGETS ("gateway retrieval model-cpu"), OFFLINE_IMAGES (auto|1|0).
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${RAGWAY_IMAGE_PREFIX:-ragway}
TAG=${RAGWAY_IMAGE_TAG:-latest}
TARGETS=${TARGETS:-gateway retrieval model-cpu}
TORCH_VERSION=$(sed -n 's/^ARG TORCH_VERSION=//p' docker/Dockerfile)
UPSTREAM_BASE=python:3.11-slim-bookworm
LOCAL_BASE=ragway/python-base:bookworm
HOST_PIP=${HOST_PIP:-$(command -v pip3 || command -v pip || true)}

log() { echo "images: $*" >&2; }

# Docker itself (and the Debian base, when needed) come from docker/base/build.sh; with SKIP it
# only installs/starts Docker.
if ! docker info >/dev/null 2>&1; then
  RAGWAY_BASE_IMAGE=$LOCAL_BASE SKIP_BASE=1 bash docker/base/build.sh
fi

if [ -z "${PYTHON_IMAGE:-}" ]; then
  if docker image inspect "$UPSTREAM_BASE" >/dev/null 2>&1 || timeout 30 docker pull -q "$UPSTREAM_BASE" >/dev/null 2>&1; then
    PYTHON_IMAGE=$UPSTREAM_BASE
  else
    log "no registry answers for $UPSTREAM_BASE: building the base from Debian packages"
    RAGWAY_BASE_IMAGE=$LOCAL_BASE bash docker/base/build.sh
    PYTHON_IMAGE=$LOCAL_BASE
  fi
fi
log "base image: $PYTHON_IMAGE"

# docker/pip/: the host pip's CA bundle, and torch +cpu when the PyTorch CPU index is unreachable.
mkdir -p docker/pip
rm -rf docker/pip/wheels docker/pip/ca-certificates.crt
TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
if [ -n "$HOST_PIP" ]; then
  cert=$("$HOST_PIP" config list 2>/dev/null | sed -n "s/^global\.cert='\(.*\)'$/\1/p" | head -1)
  if [ -n "$cert" ] && [ -f "$cert" ]; then
    cp "$cert" docker/pip/ca-certificates.crt
    log "pip trusts $cert (staged)"
  fi
  if ! curl -s -o /dev/null -m 10 "$TORCH_CPU_INDEX/torch/"; then
    for dir in $("$HOST_PIP" config list 2>/dev/null | sed -n "s/^global\.find-links='\(.*\)'$/\1/p"); do
      wheel=$(ls "$dir"/torch-"$TORCH_VERSION"+cpu-cp311-*.whl 2>/dev/null | head -1 || true)
      if [ -n "$wheel" ]; then
        mkdir -p docker/pip/wheels
        ln "$wheel" docker/pip/wheels/ 2>/dev/null || cp "$wheel" docker/pip/wheels/
        TORCH_CPU_INDEX=""
        log "PyTorch CPU index unreachable: torch from $wheel (staged)"
        break
      fi
    done
  fi
fi

build() {  # build TARGET IMAGE [FILE]
  local target=$1 image=$2 file=${3:-docker/Dockerfile} start end
  local buildlog=${TMPDIR:-/tmp}/ragway-build-$target.log
  start=$(date +%s)
  if ! DOCKER_BUILDKIT=0 docker build -f "$file" --target "$target" \
      --build-arg PYTHON_IMAGE="$PYTHON_IMAGE" --build-arg TORCH_CPU_INDEX="$TORCH_CPU_INDEX" \
      -t "$image" . >"$buildlog" 2>&1; then
    tail -30 "$buildlog" >&2
    log "building $image failed (whole log: $buildlog)"
    exit 1
  fi
  end=$(date +%s)
  printf '%-32s %8s MB %6s s\n' "$image" \
    "$(( $(docker image inspect -f '{{.Size}}' "$image") / 1000000 ))" "$((end - start))"
}

printf '%-32s %11s %8s\n' image size build
for target in $TARGETS; do
  build "$target" "$PREFIX/$target:$TAG"
done
offline=${OFFLINE_IMAGES:-auto}
if [ "$offline" = 1 ] || { [ "$offline" = auto ] && [ "$PYTHON_IMAGE" = "$LOCAL_BASE" ]; }; then
  for target in postgres redis nginx milvus; do
    build "$target" "$PREFIX/offline-$target:$TAG" docker/offline/Dockerfile
  done
fi
