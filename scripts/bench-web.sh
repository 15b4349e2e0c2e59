#!/usr/bin/env bash
# Measures the master's web side: start-up time, idle memory, and the log-in page under load
# (wrk, 16 connections, on this machine). Prints figures; asserts nothing.
#   bash scripts/bench-web.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-15}
command -v wrk >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
cargo build --release --locked --bin slices 2>&1 | tail -1
bin=target/release/slices
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
trap 'kill $pid 2>/dev/null || true; rm -rf "$dir"' EXIT

start=$(date +%s%N)
RUST_LOG=warn $bin serve --data "$dir/data" --listen 127.0.0.1:$port >"$dir/out" 2>&1 &
pid=$!
until curl -sf "http://127.0.0.1:$port/healthz" >/dev/null; do sleep 0.005; done
ready=$(date +%s%N)
echo "start-up (fresh data folder, to first healthy answer): $(( (ready - start) / 1000000 )) ms"
sleep 1
echo "idle memory (RSS): $(awk '/VmRSS/ {printf "%.1f MB", $2/1024}' /proc/$pid/status)"
echo "binary size: $(du -h $bin | cut -f1)"
echo
echo "GET /login, 16 connections, 2 wrk threads, ${secs}s:"
wrk -t2 -c16 -d${secs}s --latency "http://127.0.0.1:$port/login" | tee "$dir/wrk" | sed -n '/Latency Distribution/,/Requests\/sec/p'
echo "memory after load (RSS): $(awk '/VmRSS/ {printf "%.1f MB", $2/1024}' /proc/$pid/status)"
