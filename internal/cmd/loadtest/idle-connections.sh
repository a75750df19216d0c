#!/bin/bash
# Idle cost per session: RSS and goroutines of the telephone binary, idle, CONNECTIONS=1,2,4.
set -e
# Usage: idle-connections.sh TELEPHONE_BINARY  (RESULTS.md section 6; needs curl and python3)
BIN=${1:?usage: idle-connections.sh TELEPHONE_BINARY}
TMP=$(mktemp -d)
$BIN devserver --addr 127.0.0.1:47123 > "$TMP/devserver.log" 2>&1 &
DEV=$!
trap 'kill $DEV $BK 2>/dev/null; rm -rf "$TMP"' EXIT
for i in $(seq 50); do curl -sf http://127.0.0.1:47123/admin/stats >/dev/null && break; sleep 0.1; done
python3 -m http.server 47124 --bind 127.0.0.1 >/dev/null 2>&1 &
BK=$!
for n in 1 2 4; do
  for rep in 1 2 3; do
    TOK=$(curl -s 'http://127.0.0.1:47123/mint' | python3 -c 'import json,sys;print(json.load(sys.stdin)["token"])')
    PLUGBOARD_URL=ws://127.0.0.1:47123/telephone/websocket TELEPHONE_TOKEN=$TOK BACKEND_PORT=47124 \
      CONNECTIONS=$n OPS_ADDR=127.0.0.1:47125 LOG_FORMAT=json $BIN > "$TMP/telephone-$n.log" 2>&1 &
    PID=$!
    for i in $(seq 100); do curl -sf http://127.0.0.1:47125/ready >/dev/null 2>&1 && break; sleep 0.1; done
    sleep 5
    RSS=$(awk '/VmRSS/{print $2}' /proc/$PID/status)
    GR=$(curl -s http://127.0.0.1:47125/metrics | awk '/^go_goroutines /{print $2}')
    SESS=$(curl -s http://127.0.0.1:47125/metrics | awk '/^telephone_sessions\{state="joined"\}/{print $2}')
    echo "CONNECTIONS=$n run=$rep rss_kb=$RSS goroutines=$GR joined=$SESS"
    kill -TERM $PID; wait $PID || true
  done
done
