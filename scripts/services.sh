# Makes sure the servers the tests talk to are running: PostgreSQL on 127.0.0.1:5432
# (trust auth for local TCP) and Redis on 127.0.0.1:6379. Starts them when installed but
# stopped; installs them with apt-get when missing and running as root. Sourced by
# scripts/test.

apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "error: $* missing and not root; install them or run as root" >&2
    return 1
  fi
  if [ -z "${NETPULSE_APT_UPDATED:-}" ]; then
    echo "==> apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    NETPULSE_APT_UPDATED=1
  fi
  echo "==> apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

wait_for() { # description, command...
  local what=$1; shift
  for _ in $(seq 1 60); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  echo "error: $what did not come up" >&2
  return 1
}

ensure_postgres() {
  if pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
    echo "==> PostgreSQL is running"
    return 0
  fi
  if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
    apt_install postgresql postgresql-client
  fi
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  local hba=/etc/postgresql/$version/main/pg_hba.conf
  # The tests connect over TCP as `postgres` without a password, as on the CI machines.
  if [ -w "$hba" ] && ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
    sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
  fi
  echo "==> starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_for "PostgreSQL" pg_isready -h 127.0.0.1 -p 5432 -q
}

ensure_redis() {
  if redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; then
    echo "==> Redis is running"
    return 0
  fi
  if ! command -v redis-server >/dev/null 2>&1; then
    apt_install redis-server redis-tools
  fi
  echo "==> starting Redis"
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for "Redis" sh -c 'redis-cli -h 127.0.0.1 -p 6379 ping | grep -q PONG'
}

# A Python virtualenv with the pinned test clients (pygnmi), rebuilt when the
# requirements change.
ensure_python_env() {
  local venv=$1 requirements=$2
  local stamp="$venv/.requirements.sha256"
  local want
  want=$(sha256sum "$requirements" | cut -d' ' -f1)
  if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    echo "==> Python test environment is current"
    return 0
  fi
  if ! python3 -m venv --help >/dev/null 2>&1; then
    apt_install python3-venv
  fi
  echo "==> creating Python test environment"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  echo "$want" >"$stamp"
}

# ensure_tool COMMAND PACKAGE: installs Debian's PACKAGE when COMMAND is missing.
ensure_tool() {
  command -v "$1" >/dev/null 2>&1 || apt_install "$2"
}

# The system user the SSH session tests log in as (sshd authenticates system users):
# `netpulse-ssh`, with a home directory, /bin/sh and a fixed test password.
ensure_ssh_test_user() {
  if ! id netpulse-ssh >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
      echo "error: user netpulse-ssh missing and not root; run scripts/test as root" >&2
      return 1
    fi
    echo "==> creating user netpulse-ssh"
    useradd --create-home --shell /bin/sh netpulse-ssh
  fi
  if [ "$(id -u)" = 0 ]; then
    echo 'netpulse-ssh:netpulse-ssh-test' | chpasswd
  fi
}
