#!/usr/bin/env bash
# Runs rlmd's whole test suite on a fresh machine.
#
# The server embeds CPython 3.11 through pyo3 (libpython3.11-dev to build), and the code
# models write may import numpy and pandas, which the tests check: the embedded interpreter
# sees Debian's python3-numpy and python3-pandas, so those are installed when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for package in libpython3.11-dev python3-numpy python3-pandas; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if ((${#missing[@]})); then
  echo "installing ${missing[*]}"
  sudo=""
  if [[ "$(id -u)" -ne 0 ]]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

exec cargo test --locked "$@"
