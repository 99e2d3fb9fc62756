#!/usr/bin/env bash
# Make sure PostgreSQL and Redis answer on 127.0.0.1: start them when installed but stopped,
# install Debian's packages when missing and we are root. Prints one line per service.
# --browser (make test): also Debian's Chromium, which the Playwright tests drive.
set -euo pipefail

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }
apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "services: $* missing and not root; install it or point DATABASE_URL/CELERY_BROKER_URL elsewhere" >&2
    exit 1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
wait_for() { for _ in $(seq 1 60); do "$1" && return 0; sleep 0.5; done; return 1; }

if ! pg_up; then
  command -v pg_ctlcluster >/dev/null || apt_install postgresql
  version=$(ls /etc/postgresql | sort -n | tail -1)
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_for pg_up || { echo "services: PostgreSQL did not start" >&2; exit 1; }
  # A fresh Debian cluster only knows local peer auth: let the test role in over loopback.
  if ! psql -h 127.0.0.1 -U postgres -tAc 'select 1' >/dev/null 2>&1; then
    hba=/etc/postgresql/$version/main/pg_hba.conf
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    pg_ctlcluster --skip-systemctl-redirect "$version" main reload
  fi
fi
echo "services: postgresql ok"

# --bench (make bench): settings of a server that takes bulk writes. A 1M-row import or
# snapshot writes 0.5 to 1.7 GB of WAL; at the default max_wal_size (1 GB) that forces
# checkpoints in the middle of the timed statements. Both settings apply on reload.
if [ "${1:-}" = --bench ]; then
  psql -h 127.0.0.1 -U postgres -qAtc "ALTER SYSTEM SET max_wal_size = '8GB'" \
    -c "ALTER SYSTEM SET checkpoint_timeout = '30min'" -c "SELECT pg_reload_conf()" >/dev/null \
    && echo "services: postgresql set for bulk writes (max_wal_size 8GB, checkpoint_timeout 30min)" \
    || echo "services: could not set max_wal_size (not a superuser?); bench figures may be lower"
fi

if ! redis_up; then
  command -v redis-server >/dev/null || apt_install redis-server
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for redis_up || { echo "services: Redis did not start" >&2; exit 1; }
fi
echo "services: redis ok"

# Postfix's smtp-sink: the fast loopback SMTP peer of `make bench` (and of its smoke test).
# Installed without configuring Postfix itself: no MTA is started.
if ! command -v smtp-sink >/dev/null && [ ! -x /usr/sbin/smtp-sink ] \
    && [ ! -x /usr/lib/postfix/sbin/smtp-sink ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt_install postfix
    echo "services: smtp-sink installed"
  else
    echo "services: smtp-sink missing and not root; the SMTP bench scenarios will say so"
  fi
else
  echo "services: smtp-sink ok"
fi

# Debian's Chromium for the Playwright tests (marked `browser`): they drive /usr/bin/chromium
# and never download Playwright's own browsers. Only `make test` asks for it.
if [ "${1:-}" = --browser ]; then
  if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ]; then
      apt_install chromium
      echo "services: chromium installed"
    else
      echo "services: chromium missing and not root; the browser tests will skip"
    fi
  else
    echo "services: chromium ok"
  fi
fi
