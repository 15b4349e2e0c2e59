#!/usr/bin/env bash
# Slices side by side with the Django peer it replaces (benches/vs_django.rs): installs wrk,
# builds, seeds both with the same data and prints the ratios. Asserts nothing.
#   bash scripts/bench-vs-django.sh                     # 10,000 slices, about 6 minutes
#   BENCH_USERS=20000 bash scripts/bench-vs-django.sh  # 100,000 slices
# Knobs (environment): ROUNDS, SECS, WARMUP, PEER_DIR, PEER_WORK, BENCH_USERS, DJANGO_SETUP.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
command -v python3 >/dev/null || { echo "python3 is needed for the Django peer" >&2; exit 1; }
exec cargo bench --locked --bench vs_django
