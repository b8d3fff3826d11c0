#!/usr/bin/env bash
# Makes sure RabbitMQ (5672), PostgreSQL (5432) and Redis (6379) answer on 127.0.0.1:
# local servers where installed, else `docker compose up -d` of those three where Docker runs,
# else a message saying what to start. Exit status 0 only when all three answer.
set -u

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() {
  local port=$1 tries=${2:-60}
  for _ in $(seq "$tries"); do answers "$port" && return 0; sleep 1; done
  return 1
}

start_local() {
  case $1 in
    5432) command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ] &&
            pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start ;;
    6379) command -v redis-server >/dev/null &&
            redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no ;;
    5672) command -v rabbitmq-server >/dev/null && rabbitmq-server -detached ;;
  esac
}

missing=()
for port in 5432 6379 5672; do
  answers "$port" && continue
  echo "services: nothing answers on 127.0.0.1:$port; starting it" >&2
  start_local "$port" >/dev/null 2>&1 || true
  wait_for "$port" 90 || missing+=("$port")
done

if [ ${#missing[@]} -gt 0 ] && command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  echo "services: starting rabbitmq, postgres and redis with docker compose" >&2
  docker compose up -d rabbitmq postgres redis && for port in "${missing[@]}"; do wait_for "$port" 120; done
  still=(); for port in "${missing[@]}"; do answers "$port" || still+=("$port"); done; missing=("${still[@]}")
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "services: these ports still do not answer on 127.0.0.1: ${missing[*]}" >&2
  echo "  start RabbitMQ (5672, guest/guest), PostgreSQL (5432, trust auth, database 'postgres')" >&2
  echo "  and Redis (6379), or run 'docker compose up -d rabbitmq postgres redis'." >&2
  exit 1
fi
# RabbitMQ opens its port before it accepts AMQP sessions; give it a moment when just started.
exit 0
