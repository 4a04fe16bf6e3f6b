#!/usr/bin/env bash
# kafka-local.sh: run a real single-node Apache Kafka broker (KRaft mode,
# combined broker+controller) for development, tests and the demo.
#
# The broker jars come from Maven Central through Maven (deploy/kafka/pom.xml)
# and are cached outside the work tree, so only the first run downloads.
#
# Usage:
#   kafka-local.sh fetch
#   kafka-local.sh start  [--data-dir DIR] [--port PORT] [--controller-port PORT]
#   kafka-local.sh stop   [--data-dir DIR]
#   kafka-local.sh status [--data-dir DIR]
#
# Defaults: --data-dir $STREAMREC_CACHE_DIR/kafka-data, --port 9092,
# --controller-port 9093 (PORT+1 when another --port is given).
#
# Environment:
#   STREAMREC_CACHE_DIR              cache root (default $HOME/.cache/streamrec)
#   STREAMREC_KAFKA_START_TIMEOUT_S  seconds to wait for the broker (default 60)
#   STREAMREC_KAFKA_STOP_TIMEOUT_S   seconds to wait after SIGTERM (default 30)
#   KAFKA_HEAP_OPTS                  JVM heap flags (default -Xmx512m -Xms256m)
#   KAFKA_JVM_EXTRA_OPTS             extra JVM flags (default none)
#   MVN                              Maven command (default mvn)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
POM="$SCRIPT_DIR/pom.xml"

# Single source of truth for the Kafka version: the <kafka.version> property of the pom.
KAFKA_VERSION="$(sed -n 's:.*<kafka\.version>\([^<]*\)</kafka\.version>.*:\1:p;T;q' "$POM")"
if [[ -z "$KAFKA_VERSION" ]]; then
  echo "kafka-local: cannot read <kafka.version> from $POM" >&2
  exit 2
fi

CACHE_ROOT="${STREAMREC_CACHE_DIR:-$HOME/.cache/streamrec}"
CACHE="$CACHE_ROOT/kafka/$KAFKA_VERSION"
LIBS="$CACHE/libs"

DEFAULT_DATA_DIR="$CACHE_ROOT/kafka-data"
DEFAULT_PORT=9092
DEFAULT_CONTROLLER_PORT=9093

log() { echo "kafka-local: $*"; }
die() { echo "kafka-local: error: $*" >&2; exit 1; }

usage() {
  sed -n '2,23s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

# ---------------------------------------------------------------- fetch ----

fetch() {
  if [[ -f "$LIBS/.complete" ]]; then
    return 0
  fi
  command -v "${MVN:-mvn}" >/dev/null 2>&1 || die "Maven ('${MVN:-mvn}') is not installed"
  mkdir -p "$CACHE"
  # Serialise concurrent fetches (parallel test runs) on a lock file.
  exec 8>"$CACHE/.fetch.lock"
  flock -w 600 8 || die "timed out waiting for another fetch ($CACHE/.fetch.lock)"
  if [[ -f "$LIBS/.complete" ]]; then
    exec 8>&-
    return 0
  fi
  log "fetching Kafka $KAFKA_VERSION jars from Maven Central (first run only)..."
  local started tmp mvn_log
  started=$(date +%s)
  tmp="$(mktemp -d "$CACHE/libs.tmp.XXXXXX")"
  mvn_log="$CACHE/fetch.log"
  # -f: the pom lives here; the jars land in $tmp; Maven's own repository
  # (~/.m2 by default) keeps the downloads for other versions/runs.
  if ! "${MVN:-mvn}" -B -q -f "$POM" dependency:copy-dependencies \
      -DoutputDirectory="$tmp" -DincludeScope=runtime >"$mvn_log" 2>&1; then
    echo "kafka-local: Maven failed to fetch the Kafka jars; last lines of $mvn_log:" >&2
    tail -n 40 "$mvn_log" >&2 || true
    rm -rf "$tmp"
    exec 8>&-
    exit 1
  fi
  ls "$tmp"/kafka_2.13-*.jar >/dev/null 2>&1 || { rm -rf "$tmp"; die "Maven ran but no kafka_2.13 jar was copied"; }
  touch "$tmp/.complete"
  rm -rf "$LIBS"          # an incomplete leftover, never a complete one (checked above)
  mv -T "$tmp" "$LIBS"    # atomic rename: $LIBS is either absent or complete
  exec 8>&-
  log "fetched $(find "$LIBS" -name '*.jar' | wc -l) jars into $LIBS in $(( $(date +%s) - started )) s"
}

# ---------------------------------------------------------- process utils --

# Print the broker pid recorded for data dir $1 if that process is alive and
# really is our broker (guards against a recycled pid); return 1 otherwise.
running_pid() {
  local dir="$1" pid
  [[ -f "$dir/kafka.pid" ]] || return 1
  pid="$(tr -dc '0-9' <"$dir/kafka.pid")"
  [[ -n "$pid" ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  if [[ -r "/proc/$pid/cmdline" ]]; then
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$dir/server.properties" || return 1
  fi
  echo "$pid"
}

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# A Kafka cluster id: 16 random bytes, base64url without padding (22 chars),
# the format of `kafka-storage random-uuid` without paying for a JVM start.
# Like Kafka's Uuid.randomUuid, never one starting with '-' (it would read as a flag).
random_cluster_id() {
  local id
  while :; do
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    if [[ ${#id} -eq 22 && "$id" != -* ]]; then
      echo "$id"
      return 0
    fi
  done
}

port_open() {
  # bash's /dev/tcp: a real TCP connect, no extra tools needed.
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# ---------------------------------------------------------------- start ----

write_config() {
  local dir="$1" port="$2" cport="$3"
  cat >"$dir/server.properties" <<EOF
# Written by deploy/kafka/kafka-local.sh on every start; edits are overwritten.
process.roles=broker,controller
node.id=1
# Static single-voter quorum: the voter set lives in this file, not in the
# metadata log, so the ports may change between restarts of the same data dir.
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/logs

num.partitions=1
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=true
delete.topic.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0

num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1

# Retention: a dev broker should not fill the disk.
log.retention.hours=24
log.segment.bytes=67108864
log.retention.check.interval.ms=60000

# Log cleaner for compacted topics (cleanup.policy=compact): on, small buffers,
# and quick enough that compaction is observable in a dev session.
log.cleaner.enable=true
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=16777216
log.cleaner.io.buffer.size=524288
log.cleaner.backoff.ms=5000
log.cleaner.min.cleanable.ratio=0.1
log.cleaner.min.compaction.lag.ms=0
log.cleaner.delete.retention.ms=60000
EOF

  cat >"$dir/log4j2.properties" <<'EOF'
# Written by deploy/kafka/kafka-local.sh. Everything goes to stdout, which the
# script redirects to kafka.log in the data dir.
status = warn
# Keep logging through the broker's own shutdown hook (clean-shutdown lines).
shutdownHook = disable
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.cleaner.name = kafka.log.LogCleaner
logger.cleaner.level = INFO
logger.apache.name = org.apache.kafka
logger.apache.level = INFO
logger.clients.name = org.apache.kafka.clients
logger.clients.level = WARN
EOF
}

start() {
  local dir="$1" port="$2" cport="$3"
  [[ "$port" =~ ^[0-9]+$ ]] || die "--port must be a number, got '$port'"
  [[ "$cport" =~ ^[0-9]+$ ]] || die "--controller-port must be a number, got '$cport'"
  [[ "$port" != "$cport" ]] || die "--port and --controller-port must differ"

  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"

  # One start at a time per data dir. (The broker must not inherit fd 9:
  # see the launch below.)
  exec 9>"$dir/.kafka-local.lock"
  flock -w 300 9 || die "another kafka-local.sh start holds $dir/.kafka-local.lock"

  local pid
  if pid="$(running_pid "$dir")"; then
    local running_port
    running_port="$(sed -n 's/^advertised\.listeners=PLAINTEXT:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$dir/server.properties" 2>/dev/null || true)"
    log "broker already running for $dir (pid $pid, 127.0.0.1:${running_port:-?})"
    if [[ -n "$running_port" && "$running_port" != "$port" ]]; then
      echo "kafka-local: warning: it listens on $running_port, not the requested $port" >&2
    fi
    return 0
  fi

  fetch

  if port_open "$port"; then
    die "port $port on 127.0.0.1 is already in use by another process"
  fi
  if port_open "$cport"; then
    die "controller port $cport on 127.0.0.1 is already in use by another process"
  fi

  write_config "$dir" "$port" "$cport"
  mkdir -p "$dir/logs"

  local java_cp="$LIBS/*"
  if [[ ! -f "$dir/logs/meta.properties" ]]; then
    local cluster_id fmt_log="$dir/format.log"
    cluster_id="$(random_cluster_id)"
    if ! java -Xmx256m -Dlog4j2.configurationFile="$dir/log4j2.properties" -cp "$java_cp" \
        kafka.tools.StorageTool format --config "$dir/server.properties" \
        --cluster-id "$cluster_id" --ignore-formatted >"$fmt_log" 2>&1; then
      echo "kafka-local: formatting $dir/logs failed:" >&2
      tail -n 30 "$fmt_log" >&2 || true
      exit 1
    fi
    log "formatted $dir/logs (cluster id $cluster_id)"
  fi

  # Keep the previous run's log for post-mortems; the readiness check below
  # must only see this run's lines.
  if [[ -f "$dir/kafka.log" ]]; then mv -f "$dir/kafka.log" "$dir/kafka.log.prev"; fi
  rm -f "$dir/kafka.pid"

  local -a heap extra
  read -r -a heap <<<"${KAFKA_HEAP_OPTS:--Xmx512m -Xms256m}"
  read -r -a extra <<<"${KAFKA_JVM_EXTRA_OPTS:-}"
  local started_ms launcher
  started_ms=$(now_ms)
  # setsid: own session, so the broker survives the caller's terminal/process
  # group. The inner shell writes its own pid, then exec's java (same pid).
  # stdin/stdout/stderr are detached so a caller capturing our output (e.g.
  # subprocess.run(capture_output=True)) does not wait for the broker to exit,
  # and the lock fds 8/9 are closed so the broker does not hold the start lock.
  # shellcheck disable=SC2016
  nohup setsid bash -c 'echo $$ >"$1/kafka.pid"; shift; exec "$@"' _ "$dir" \
    java "${heap[@]}" \
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$dir/log4j2.properties" \
    ${extra[@]+"${extra[@]}"} \
    -cp "$java_cp" kafka.Kafka "$dir/server.properties" \
    </dev/null >"$dir/kafka.log" 2>&1 8>&- 9>&- &
  launcher=$!
  disown || true

  local timeout="${STREAMREC_KAFKA_START_TIMEOUT_S:-60}"
  local deadline_ms=$(( started_ms + timeout * 1000 ))
  pid=""
  while :; do
    if { [[ -s "$dir/kafka.pid" ]] || ! kill -0 "$launcher" 2>/dev/null; } && ! pid="$(running_pid "$dir")"; then
      echo "kafka-local: the broker exited during startup; last lines of $dir/kafka.log:" >&2
      tail -n 40 "$dir/kafka.log" >&2 || true
      rm -f "$dir/kafka.pid"
      exit 1
    fi
    if port_open "$port" && grep -qE 'Kafka Server started|started \(kafka\.server\.KafkaRaftServer\)' "$dir/kafka.log" 2>/dev/null; then
      break
    fi
    if (( $(now_ms) >= deadline_ms )); then
      echo "kafka-local: the broker did not become ready on 127.0.0.1:$port within ${timeout} s; last lines of $dir/kafka.log:" >&2
      tail -n 40 "$dir/kafka.log" >&2 || true
      stop "$dir" >/dev/null 2>&1 || true
      exit 1
    fi
    sleep 0.25
  done
  local took_ms=$(( $(now_ms) - started_ms ))
  log "broker ready on 127.0.0.1:$port in $(( took_ms / 1000 )).$(( took_ms % 1000 / 100 )) s (pid $pid, data $dir)"
}

# ----------------------------------------------------------------- stop ----

stop() {
  local dir="$1"
  [[ -d "$dir" ]] || { log "not running (no data dir $dir)"; return 0; }
  dir="$(cd "$dir" && pwd)"
  local pid
  if ! pid="$(running_pid "$dir")"; then
    rm -f "$dir/kafka.pid"
    log "not running ($dir)"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  local timeout="${STREAMREC_KAFKA_STOP_TIMEOUT_S:-30}"
  local deadline=$(( $(date +%s) + timeout ))
  while kill -0 "$pid" 2>/dev/null; do
    if (( $(date +%s) >= deadline )); then
      echo "kafka-local: broker pid $pid still alive after ${timeout} s; sending SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
      break
    fi
    sleep 0.2
  done
  rm -f "$dir/kafka.pid"
  log "stopped broker (pid $pid, data $dir)"
}

status() {
  local dir="$1" pid
  [[ -d "$dir" ]] || { log "not running"; return 1; }
  dir="$(cd "$dir" && pwd)"
  if pid="$(running_pid "$dir")"; then
    log "running (pid $pid, data $dir)"
    return 0
  fi
  log "not running ($dir)"
  return 1
}

# ----------------------------------------------------------------- main ----

main() {
  local cmd="${1:-}"
  [[ $# -gt 0 ]] && shift
  local data_dir="$DEFAULT_DATA_DIR" port="$DEFAULT_PORT" cport=""
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --data-dir) data_dir="${2:?--data-dir needs a value}"; shift 2 ;;
      --data-dir=*) data_dir="${1#*=}"; shift ;;
      --port) port="${2:?--port needs a value}"; shift 2 ;;
      --port=*) port="${1#*=}"; shift ;;
      --controller-port) cport="${2:?--controller-port needs a value}"; shift 2 ;;
      --controller-port=*) cport="${1#*=}"; shift ;;
      -h|--help) usage; exit 0 ;;
      *) echo "kafka-local: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
  done
  if [[ -z "$cport" ]]; then
    if [[ "$port" == "$DEFAULT_PORT" ]]; then cport="$DEFAULT_CONTROLLER_PORT"; else cport=$(( port + 1 )); fi
  fi

  case "$cmd" in
    fetch) fetch ;;
    start) start "$data_dir" "$port" "$cport" ;;
    stop) stop "$data_dir" ;;
    status) status "$data_dir" ;;
    -h|--help|help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
