#!/usr/bin/env bash
# Make sure a Redis answers on 127.0.0.1:6379 (or $TANDEM_TEST_REDIS_PORT) before the tests run.
# A Redis already listening is used as it is. Otherwise Debian's redis-server is started in the
# background without persistence (installed with apt-get first if missing), and left running for
# the next run; stop it with: redis-cli -p 6379 shutdown nosave
set -euo pipefail

PORT="${TANDEM_TEST_REDIS_PORT:-6379}"

answers() {
    # bash's /dev/tcp, so that this works before redis-cli is installed
    { exec 3<>"/dev/tcp/127.0.0.1/$PORT"; } 2>/dev/null || return 1
    printf 'PING\r\n' >&3
    local reply=""
    read -r -t 1 reply <&3 || true
    exec 3>&-
    [[ "$reply" == "+PONG"* ]]
}

as_root() {
    if [[ "$(id -u)" == 0 ]]; then "$@"; else sudo "$@"; fi
}

if answers; then
    exit 0
fi
if ! command -v redis-server >/dev/null; then
    echo "ensure-redis: installing Debian's redis-server" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
log="${TMPDIR:-/tmp}/tandem-test-redis-$PORT.log"
redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --daemonize yes --logfile "$log"
for _ in $(seq 50); do
    if answers; then
        echo "ensure-redis: started redis-server on 127.0.0.1:$PORT (log: $log)" >&2
        exit 0
    fi
    sleep 0.1
done
echo "ensure-redis: redis-server did not answer on 127.0.0.1:$PORT; see $log" >&2
exit 1
