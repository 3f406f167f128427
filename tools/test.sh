#!/usr/bin/env bash
# The test command: `bash tools/test.sh [pytest arguments]`.
#
# As root on Debian or Ubuntu it first installs the programs the real-tool tests drive (one Debian
# package per line in tools/test-packages.txt), then makes the venv and runs the whole suite. As any
# other user it runs everything that needs no root (what needs the machine's root, the lab, skips with
# its reason). Either way it ends with a line saying what was skipped, by reason. CI (`.ci/run`) runs
# this script with CI=true, where a skipped test counts as a failure (tests/support/skip_policy.py).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -eq 0 ]; then
  if command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    mapfile -t packages < <(grep -v '^#' tools/test-packages.txt | grep .)
    python3 -c 'import ensurepip, venv' 2>/dev/null || packages+=(python3-venv)
    missing=()
    for package in "${packages[@]}"; do
      dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
      echo "test: installing ${missing[*]}" >&2
      apt-get update -qq
      apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
  else
    echo "test: no apt-get here: install the programs of tools/test-packages.txt yourself, or the real-tool tests skip" >&2
  fi
fi

if [ ! -x venv/bin/python ]; then
  # The oldest Python the program supports is Ubuntu 22.04's (tests/tools/test_oldest_python.py).
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' || {
    echo "test: $(python3 --version 2>&1) is too old: install Python 3.10 or newer with its venv module (Debian: apt-get install python3-venv)" >&2
    exit 1
  }
  python3 -m venv venv || {
    echo "test: 'python3 -m venv' failed: install Python 3.10 or newer with its venv module (Debian: apt-get install python3-venv)" >&2
    exit 1
  }
fi
venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
if [ "$(id -u)" -eq 0 ] && command -v debootstrap >/dev/null 2>&1; then
  # The lab machines' image, once per machine: a cold cache is a debootstrap (minutes), said here so a slow run is explained.
  venv/bin/python -m lab image
fi

# The skip policy (tests/support/skip_policy.py) writes its line counting the skips by reason here: said last.
SKIPPED_SUMMARY=$(mktemp)
export SKIPPED_SUMMARY
trap 'rm -f "$SKIPPED_SUMMARY"' EXIT
set +e
venv/bin/python -m pytest -q "$@"
status=$?
set -e
summary=$(cat "$SKIPPED_SUMMARY")
if [ "$(id -u)" -ne 0 ]; then
  echo "test: ran as $(id -un): ${summary:-nothing skipped}${summary:+; run 'bash tools/test.sh' as root to run them all}"
elif [ -n "$summary" ]; then
  echo "test: ran as root: $summary"
fi
exit "$status"
