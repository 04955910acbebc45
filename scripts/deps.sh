# Sourced by scripts/serve.sh and scripts/test.sh: installs, when missing, what rlmd needs
# from Debian to build and to run its REPL.
#
# The server embeds CPython 3.11 through pyo3 (libpython3.11-dev to build), and the code
# models write may import numpy and pandas: the embedded interpreter sees Debian's
# python3-numpy and python3-pandas (which also bring the python3 that pyo3's build asks).
# libcap2-bin: setcap, for scripts/serve.sh run by a user other than root.

rlmd_install_deps() {
  if ! command -v dpkg >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    echo "not a Debian system: install CPython 3.11's shared library, numpy and pandas yourself" >&2
    return 0
  fi
  local missing=() package
  for package in libpython3.11-dev python3-numpy python3-pandas libcap2-bin; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
  done
  if ((${#missing[@]})); then
    echo "installing ${missing[*]}"
    local sudo=""
    if [[ "$(id -u)" -ne 0 ]]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

rlmd_install_deps
