# shellcheck shell=bash
# Shared helpers for scripts/infra/*.sh. Sourced, not executed.
#
# Conventions:
#   - everything lives under $HERALD_INFRA_DIR (default ~/.cache/herald-infra)
#   - progress goes to stderr; only `export ...` lines go to stdout
#   - each service has a pid file in $INFRA_DIR/run and a log in $INFRA_DIR/logs

INFRA_DIR="${HERALD_INFRA_DIR:-${HOME:-/root}/.cache/herald-infra}"
RUN_DIR="$INFRA_DIR/run"
LOG_DIR="$INFRA_DIR/logs"
DL_DIR="$INFRA_DIR/downloads"
mkdir -p "$INFRA_DIR" "$RUN_DIR" "$LOG_DIR" "$DL_DIR"
INFRA_DIR="$(cd "$INFRA_DIR" && pwd -P)"
RUN_DIR="$INFRA_DIR/run"
LOG_DIR="$INFRA_DIR/logs"
DL_DIR="$INFRA_DIR/downloads"

# Seconds to wait for a service to become ready / to exit after SIGTERM.
READY_TIMEOUT="${HERALD_INFRA_READY_TIMEOUT:-120}"
STOP_TIMEOUT="${HERALD_INFRA_STOP_TIMEOUT:-30}"

log() { printf '[%s %(%H:%M:%S)T] %s\n' "${SERVICE:-infra}" -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Run a command with its stdout sent to stderr (keeps our stdout for exports).
quiet() { "$@" >&2; }

_apt_updated=0
# apt_install PKG... : install Debian packages (as root, non-interactive).
apt_install() {
  [ "$(id -u)" = 0 ] || die "need root to apt-get install $*"
  if [ "$_apt_updated" = 0 ]; then
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || die "apt-get update failed"
    _apt_updated=1
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2 \
    || die "apt-get install $* failed"
}

# need_cmd CMD PKG : install PKG when CMD is not on PATH.
need_cmd() { command -v "$1" >/dev/null 2>&1 || apt_install "$2"; }

need_java17() {
  need_cmd java openjdk-17-jre-headless
  local major
  major="$(java_major java)"
  [ "$major" -ge 17 ] || die "java on PATH is version $major; Java 17+ is required"
}

need_mvn() {
  need_java17
  need_cmd mvn maven
}

# java_major JAVA : print the feature version (17, 21, 25...) of a java binary.
java_major() {
  "$1" -XshowSettings:properties -version 2>&1 \
    | awk -F'= ' '/java.specification.version/ {print $2; exit}' | cut -d. -f1
}

# port_in_use PORT : true when something listens on 127.0.0.1:PORT.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pid_alive PIDFILE MARKER : true when PIDFILE names a live process whose
# command line contains MARKER (guards against a recycled pid).
pid_alive() {
  local pidfile="$1" marker="$2" pid
  [ -s "$pidfile" ] || return 1
  pid="$(cat "$pidfile")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$marker"
}

# stop_pid PIDFILE MARKER : SIGTERM, wait up to STOP_TIMEOUT s, then SIGKILL.
stop_pid() {
  local pidfile="$1" marker="$2" pid i
  if ! pid_alive "$pidfile" "$marker"; then
    rm -f "$pidfile"
    log "not running"
    return 0
  fi
  pid="$(cat "$pidfile")"
  log "stopping (pid $pid, SIGTERM)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < STOP_TIMEOUT * 5; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "still alive after ${STOP_TIMEOUT}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$pidfile"
  log "stopped"
}

# wait_ready NAME PIDFILE MARKER LOGFILE CHECK_CMD... : poll CHECK_CMD until it
# succeeds; fail with the log tail when the process dies or time runs out.
wait_ready() {
  local name="$1" pidfile="$2" marker="$3" logfile="$4" start=$SECONDS
  shift 4
  while :; do
    if "$@" >/dev/null 2>&1; then
      log "$name ready after $((SECONDS - start))s"
      return 0
    fi
    if ! pid_alive "$pidfile" "$marker"; then
      log "$name exited during startup; last lines of $logfile:"
      tail -n 60 "$logfile" >&2 || true
      die "$name failed to start"
    fi
    if ((SECONDS - start >= READY_TIMEOUT)); then
      log "$name not ready after ${READY_TIMEOUT}s; last lines of $logfile:"
      tail -n 60 "$logfile" >&2 || true
      stop_pid "$pidfile" "$marker"
      die "$name did not become ready within ${READY_TIMEOUT}s (log: $logfile)"
    fi
    sleep 0.5
  done
}

# mvn_quiet ARGS... : run Maven in batch mode; show its output only on failure.
mvn_quiet() {
  local out rc=0
  out="$(mvn -B -q "$@" 2>&1)" || rc=$?
  if [ "$rc" != 0 ]; then
    printf '%s\n' "$out" | tail -n 40 >&2
    die "mvn $* failed (exit $rc)"
  fi
}
