# Sourced by scripts/test.sh: makes sure the PostgreSQL server the tests use answers on
# 127.0.0.1:5432 (user postgres, trust auth), starting (or, on Debian, installing) it if
# needed, and drops the databases earlier test runs left behind.

rlmd_postgres_up() {
  pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null && return 0
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "installing postgresql"
    local sudo=""
    if [[ "$(id -u)" -ne 0 ]]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends postgresql
  fi
  local version
  version="$(ls /etc/postgresql | sort -V | tail -n1)"
  echo "starting PostgreSQL $version"
  # Local test server only: trust on loopback, as the tests expect.
  local hba="/etc/postgresql/$version/main/pg_hba.conf"
  if ! grep -q "^host all all 127.0.0.1/32 trust" "$hba"; then
    sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
  fi
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
  for _ in $(seq 50); do
    pg_isready -q -h 127.0.0.1 -p 5432 && return 0
    sleep 0.2
  done
  echo "PostgreSQL did not start" >&2
  return 1
}

rlmd_drop_test_databases() {
  local name
  for name in $(psql -h 127.0.0.1 -U postgres -Atc \
      "SELECT datname FROM pg_database WHERE datname LIKE 'rlmd_test_%'"); do
    PGOPTIONS="--client-min-messages=warning" psql -h 127.0.0.1 -U postgres -qc \
      "DROP DATABASE IF EXISTS $name WITH (FORCE)" >/dev/null
  done
}

rlmd_postgres_up
rlmd_drop_test_databases
