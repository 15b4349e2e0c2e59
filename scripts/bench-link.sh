#!/usr/bin/env bash
# The slave link's speed: `ping` over one kept mutual-TLS connection to a real slices-agent,
# side by side with the seed's original way of reaching a slave (a new `ssh host sudo -n true`
# per command), on this machine; plus the agent's memory and binary size. Prints figures.
#   bash scripts/bench-link.sh [pings] [ssh-runs]
set -euo pipefail
cd "$(dirname "$0")/.."
pings=${1:-5000}
runs=${2:-100}
need=()
for p in openssh-server openssh-client sudo; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
if [ ${#need[@]} -gt 0 ]; then apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"; fi
cargo build --release --locked --bin slices --bin slices-agent 2>&1 | tail -1

dir=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# --- the agent, with the simulator (ping does not touch the driver)
aport=$(free_port)
target/release/slices node add bench --address 127.0.0.1:$aport --bundle "$dir/bundle" --data "$dir/data" >/dev/null
sed -e "s#/etc/slices-agent#$dir/bundle#; s#0.0.0.0#127.0.0.1#; s#driver = \"lxc\"#driver = \"sim\"#; s#/var/lib/slices-agent#$dir/agent#" \
  "$dir/bundle/agent.toml" > "$dir/agent.toml"
RUST_LOG=warn target/release/slices-agent run --config "$dir/agent.toml" &
pids+=($!); agent=$!
until (exec 3<>/dev/tcp/127.0.0.1/$aport) 2>/dev/null; do sleep 0.02; done
sleep 0.5
echo "slices-agent at rest: $(awk '/VmRSS/ {printf "%.1f MB", $2/1024}' /proc/$agent/status) RSS; binary $(du -h target/release/slices-agent | cut -f1)"
target/release/slices node ping bench -n "$pings" --data "$dir/data"
echo "slices-agent after the pings: $(awk '/VmRSS/ {printf "%.1f MB", $2/1024}' /proc/$agent/status) RSS"
echo

# --- the seed's way: a new ssh connection and sudo per command
sport=$(free_port)
mkdir -p /run/sshd "$dir/ssh"
ssh-keygen -q -t ed25519 -N '' -f "$dir/ssh/host" && ssh-keygen -q -t ed25519 -N '' -f "$dir/ssh/client"
cp "$dir/ssh/client.pub" "$dir/ssh/authorized_keys"
cat > "$dir/ssh/sshd_config" <<CONF
Port $sport
ListenAddress 127.0.0.1
HostKey $dir/ssh/host
PidFile $dir/ssh/sshd.pid
AuthorizedKeysFile $dir/ssh/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
PermitRootLogin prohibit-password
CONF
/usr/sbin/sshd -f "$dir/ssh/sshd_config" -E "$dir/ssh/log"
sleep 0.3
pids+=("$(cat "$dir/ssh/sshd.pid")")
for i in $(seq "$runs"); do
  s=$(date +%s%N)
  ssh -q -i "$dir/ssh/client" -p "$sport" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
      -o BatchMode=yes root@127.0.0.1 sudo -n true
  e=$(date +%s%N)
  echo $(( (e - s) / 1000 ))
done | sort -n | awk -v n="$runs" '{a[NR]=$1} END {
  printf "%d x \"ssh host sudo -n true\" (the seed'"'"'s way), each a new connection:\n  min %.3f ms, median %.3f ms, 99th percentile %.3f ms, max %.3f ms\n",
    n, a[1]/1000, a[int((n-1)*0.5+1.5)]/1000, a[int((n-1)*0.99+1.5)]/1000, a[n]/1000 }'
