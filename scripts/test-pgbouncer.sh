#!/usr/bin/env bash
# The PostgreSQL tests that matter behind a pooler (logins, registrations, rate limits, login policies, session context, several
# instances on one database, key retirement, concurrent writers), run through a PgBouncer in
# transaction mode with PASSKEYD_DATABASE_PREPARED_STATEMENTS=false, the way operators put PostgreSQL
# behind many instances. Starts its own PgBouncer (config in a temporary directory, its own port, trust
# auth) in front of the PostgreSQL of PASSKEYD_CI_DATABASE_URL and stops it at the end.
#   usage: scripts/test-pgbouncer.sh [vitest args...]   (e.g. --reporter=json --outputFile=report.json)
set -euo pipefail
cd "$(dirname "$0")/.."
pg_url=${PASSKEYD_CI_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
pg_host=$(node -e 'const u = new URL(process.argv[1]); console.log(u.hostname)' "$pg_url")
pg_port=$(node -e 'const u = new URL(process.argv[1]); console.log(u.port || 5432)' "$pg_url")
port=${PASSKEYD_PGBOUNCER_PORT:-16432}
tests=${PASSKEYD_PGBOUNCER_TESTS:-test/login-flow.test.ts test/login-instances.test.ts test/passkeys-flow.test.ts test/rate-limit.test.ts test/rate-limit-leases.test.ts test/machine-users-instances.test.ts test/signing-key-retirement.test.ts test/concurrency.test.ts test/login-policy.test.ts test/session-context.test.ts}
bin=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)

dir=$(mktemp -d)
# Trust: PgBouncer asks PostgreSQL (as the auth user) whether a role exists, so the tests' per-schema
# roles need no entry here. Small pools (no cap over all of them: a new role's login waits for the auth
# query, which needs a server connection of its own), closed when idle: the tests make one pool per schema.
cat >"$dir/pgbouncer.ini" <<INI
[databases]
* = host=$pg_host port=$pg_port
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $dir/users.txt
auth_user = postgres
pool_mode = transaction
default_pool_size = 5
max_client_conn = 1000
server_idle_timeout = 5
# passkeyd sends its statement timeout as a startup parameter; the pooler passes none on (README)
ignore_startup_parameters = statement_timeout,extra_float_digits
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
INI
echo '"postgres" ""' >"$dir/users.txt"
# PgBouncer refuses to run as root: as root, it switches to the postgres user.
if [ "$(id -u)" = 0 ]; then chown -R postgres "$dir"; as_user=(-u postgres); else as_user=(); fi
"$bin" -q "${as_user[@]}" "$dir/pgbouncer.ini" &
bouncer=$!
trap 'kill "$bouncer" 2>/dev/null || true; wait "$bouncer" 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p "$port" -q && break; sleep 0.5; done
pg_isready -h 127.0.0.1 -p "$port"

bounced_url=$(node -e 'const u = new URL(process.argv[1]); u.hostname = "127.0.0.1"; u.port = process.argv[2]; console.log(u.toString())' "$pg_url" "$port")
PASSKEYD_TEST_DATABASE_URL=$bounced_url PASSKEYD_TEST_POOLER=pgbouncer PASSKEYD_DATABASE_PREPARED_STATEMENTS=false \
  npx vitest run $tests "$@"
