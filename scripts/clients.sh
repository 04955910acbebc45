# Sourced by scripts/test.sh: a virtual environment with the real clients the tests drive
# (OpenAI's Python SDK; schemathesis, the schema-driven API fuzzer; an OpenAPI validator;
# Playwright, which drives Debian's chromium for the console's tests), from the package
# registries, made once in target/clients-venv. Tests find its Python through
# RLMD_TEST_PYTHON.

rlmd_clients_venv() {
  local venv="$PWD/target/clients-venv"
  local wanted="openai==3.57.0 schemathesis==4.32.5 openapi-spec-validator==0.7.2 playwright==1.65.2"
  local missing=()
  python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  if ((${#missing[@]})) && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${missing[*]}"
    local sudo=""
    if [[ "$(id -u)" -ne 0 ]]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
  if [[ ! -x "$venv/bin/python" ]] || ! grep -qxF "$wanted" "$venv/.installed" 2>/dev/null; then
    echo "installing the test clients ($wanted) in $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    # shellcheck disable=SC2086 # the list splits into packages
    "$venv/bin/pip" install --quiet --disable-pip-version-check $wanted
    echo "$wanted" >"$venv/.installed"
  fi
  export RLMD_TEST_PYTHON="$venv/bin/python"
}

rlmd_clients_venv
