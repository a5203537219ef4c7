#!/usr/bin/env bash
# Debian packages the tests and benchmarks need: Chromium for the browser tests, the Python 3.11
# documentation (HTML, /usr/share/doc/python3.11/html), the Git manual (/usr/share/doc/git/html) and
# the Flask documentation (/usr/share/doc/python-flask-doc/html) as the real corpora of
# bench/rag_eval.py (--corpus-name python|git|flask). Idempotent; skipped when present.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ -f /usr/share/doc/python3.11/html/library/index.html ] || need+=(python3.11-doc)
[ -f /usr/share/doc/git/html/git-commit.html ] || need+=(git-doc)
[ -f /usr/share/doc/python-flask-doc/html/quickstart.html ] || need+=(python-flask-doc)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "install_system: missing ${need[*]}; run as root or: sudo apt-get install -y ${need[*]}" >&2
  exit 0
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
