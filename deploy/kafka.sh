#!/usr/bin/env bash
# A single-node Apache Kafka 4.x broker+controller (KRaft) on 127.0.0.1, from Maven Central jars.
#
#   deploy/kafka.sh fetch    resolve the broker jars once into deploy/.kafka/lib (cached; offline afterwards)
#   deploy/kafka.sh format   format KRaft storage in $KAFKA_STATE_DIR if it is not formatted yet
#   deploy/kafka.sh start    fetch + format + start in the background, wait until the broker answers
#   deploy/kafka.sh stop     stop it cleanly (SIGTERM, then SIGKILL after $KAFKA_STOP_TIMEOUT seconds)
#   deploy/kafka.sh status   exit 0 when the broker of $KAFKA_STATE_DIR is running
#   deploy/kafka.sh wipe     stop, then delete $KAFKA_STATE_DIR (all topics and offsets)
#
# Settings (environment): KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (9093),
# KAFKA_STATE_DIR (deploy/.kafka/state), KAFKA_HEAP (1g), KAFKA_START_TIMEOUT (90), KAFKA_STOP_TIMEOUT (30).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
lib_dir="$here/.kafka/lib"
port="${KAFKA_PORT:-9092}"
controller_port="${KAFKA_CONTROLLER_PORT:-9093}"
state_dir="${KAFKA_STATE_DIR:-$here/.kafka/state}"
heap="${KAFKA_HEAP:-1g}"
start_timeout="${KAFKA_START_TIMEOUT:-90}"
stop_timeout="${KAFKA_STOP_TIMEOUT:-30}"
pid_file="$state_dir/broker.pid"
config="$state_dir/server.properties"

log() { echo "[kafka.sh] $*" >&2; }

java_args=(java -Xms256m "-Xmx$heap" -XX:+UseG1GC -Djava.awt.headless=true
  "-Dlog4j2.configurationFile=$here/log4j2.properties" "-Dkafka.logs.dir=$state_dir/logs" -cp "$lib_dir/*")
java_cmd() { "${java_args[@]}" "$@"; }

fetch() {
  if [ -f "$lib_dir/.complete" ] && [ "$lib_dir/.complete" -nt "$here/pom.xml" ]; then return 0; fi
  log "resolving the broker jars from Maven Central (once)"
  rm -rf "$lib_dir"
  mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$lib_dir"
  touch "$lib_dir/.complete"
}

write_config() {
  mkdir -p "$state_dir/data" "$state_dir/logs"
  cat > "$config" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$state_dir/data
# footfall creates every topic it uses with explicit partition counts; a typo must not create one.
auto.create.topics.enable=false
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=-1
log.segment.bytes=268435456
PROPS
}

format() {
  fetch
  write_config
  if [ -f "$state_dir/data/meta.properties" ]; then return 0; fi
  local cluster_id
  cluster_id="$(java_cmd kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)"
  log "formatting KRaft storage in $state_dir (cluster $cluster_id)"
  java_cmd kafka.tools.StorageTool format --standalone -t "$cluster_id" -c "$config" >/dev/null
}

running() { [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start() {
  if running; then log "already running (pid $(cat "$pid_file")) on 127.0.0.1:$port"; return 0; fi
  format
  if port_open "$port"; then log "127.0.0.1:$port is taken by another process"; exit 1; fi
  : > "$state_dir/logs/stdout.log"
  # setsid: the broker outlives this script and is not hit by a terminal's Ctrl-C; `stop` ends it.
  setsid "${java_args[@]}" kafka.Kafka "$config" >>"$state_dir/logs/stdout.log" 2>&1 < /dev/null &
  echo $! > "$pid_file"
  local started=$SECONDS
  until grep -q "Kafka Server started" "$state_dir/logs/server.log" 2>/dev/null && port_open "$port"; do
    if ! running; then log "the broker exited while starting:"; tail -n 30 "$state_dir/logs/stdout.log" >&2; exit 1; fi
    if (( SECONDS - started > start_timeout )); then log "no answer after ${start_timeout}s"; stop; exit 1; fi
    sleep 0.2
  done
  log "broker up on 127.0.0.1:$port after $(( SECONDS - started ))s (pid $(cat "$pid_file"), state $state_dir)"
}

stop() {
  if ! running; then rm -f "$pid_file"; return 0; fi
  local pid; pid="$(cat "$pid_file")"
  kill -TERM "$pid"
  local waited=0
  while kill -0 "$pid" 2>/dev/null; do
    if (( waited >= stop_timeout * 5 )); then log "still running after ${stop_timeout}s; killing"; kill -KILL "$pid"; break; fi
    sleep 0.2; waited=$((waited + 1))
  done
  rm -f "$pid_file"
  log "broker stopped"
}

case "${1:-}" in
  fetch) fetch ;;
  format) format ;;
  start) start ;;
  stop) stop ;;
  status) running ;;
  wipe) stop; rm -rf "$state_dir" ;;
  *) sed -n '2,13p' "$0" >&2; exit 2 ;;
esac
