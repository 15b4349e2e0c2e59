#!/usr/bin/env bash
# The gateway reconcile benchmark (docs/benchmarks.md): 2,000 users against a real sshd on
# loopback and against the local target. Needs root and openssh-server (scripts/test.sh
# installs it). Usage: bash scripts/bench-gateway.sh [USERS]
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_GATEWAY_USERS="${1:-2000}" cargo bench --bench gateway
