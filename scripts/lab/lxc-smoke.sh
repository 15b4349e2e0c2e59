#!/usr/bin/env bash
# Manual smoke test of the LXC recipe of docs/lab.md with the OS template of os-template.sh:
# bridge -> extract the template once -> overlay clone (plain copy as fallback) -> start ->
# sshd answers -> useradd + key -> ssh login -> cgroup counters -> stop -> destroy.
#
#   scripts/lab/lxc-smoke.sh
#
# Needs root. Installs what is missing (lxc, debootstrap, openssh-client, openssh-server,
# bridge-utils, iproute2). Sends traffic only to 10.77.9.11 on its own bridge slbr-smoke
# (10.77.9.1/24). Removes everything it made (bridge, veth, containers, rootfs folders,
# lxc.* cgroup folders), also when a step fails or the run is interrupted.
#
# Environment:
#   SMOKE_CLONE=overlay|copy   how the container's rootfs is made from the base (default:
#                              overlay, falling back to a plain copy if lxc-copy fails)
#   SMOKE_KEEP=1               keep the lab folder (logs) after the run
#   TMPDIR                     where the lab folder goes (default /tmp). TMPDIR=/dev/shm
#                              (tmpfs) extracts in about 1.3 s where ext4 here took 1.4-13 s
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
BR=slbr-smoke
BR_ADDR=10.77.9.1
CT_ADDR=10.77.9.11
CT=slsmoke11                 # container name (cgroups: lxc.payload.$CT)
BASE=slsmokebase             # holds the extracted template; never started
HWADDR=00:16:3e:77:09:0b     # fixed MAC: no stale neighbour entry on reuse of the IP
VETH=vslsmoke11              # host side of the container's veth, named so cleanup finds it
MEM_LIMIT=256M
PIDS_MAX=240
CLONE_MODE=${SMOKE_CLONE:-overlay}
LOCK=/run/slices-lab-smoke.lock

log() { printf '[smoke %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }
now() { printf '%s' "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }'; }
declare -a TIMINGS=()
timing() { TIMINGS+=("$(printf '%-16s %6s s' "$1" "$2")"); log "$1: $2 s"; }

[ "$(id -u)" = 0 ] || die "must run as root"

# --- packages ---------------------------------------------------------------------------
need=()
for p in lxc debootstrap openssh-client openssh-server bridge-utils iproute2; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi

# One smoke run at a time: the bridge, veth and container names are fixed.
exec 8>"$LOCK"
flock -n 8 || die "another lxc-smoke.sh is running ($LOCK)"

# --- cleanup (also of a run that was killed) -----------------------------------------------
LAB=""
BG=""                        # a long background step (tar) to end on interruption

# rmdir LXC's cgroup folders of our containers in every v1 hierarchy and in the unified one.
remove_cgroups() {
  local name d
  for name in "$CT" "$BASE"; do
    for d in /sys/fs/cgroup/*/lxc.payload."$name" /sys/fs/cgroup/*/lxc.monitor."$name" \
      /sys/fs/cgroup/lxc.payload."$name" /sys/fs/cgroup/lxc.monitor."$name"; do
      [ -d "$d" ] || continue
      # children first (systemd inside the container makes its own sub-folders)
      find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
  done
  # lxc.pivot is shared by all containers: remove it only when it is empty (rmdir fails
  # otherwise, which is what we want)
  for d in /sys/fs/cgroup/*/lxc.pivot /sys/fs/cgroup/lxc.pivot; do
    if [ -d "$d" ]; then rmdir "$d" 2>/dev/null || true; fi
  done
}

# Stop and destroy the containers of lab folder $1, remove its mounts and the folder itself.
remove_lab() {
  local lab=$1 n mp
  [ -n "$lab" ] && [ -d "$lab" ] || return 0
  for n in "$CT" "$BASE"; do
    [ -e "$lab/lxc/$n/config" ] || continue
    if lxc-info -P "$lab/lxc" -n "$n" -s 2>/dev/null | grep -q RUNNING; then
      lxc-stop -P "$lab/lxc" -n "$n" -k >/dev/null 2>&1 || true
    fi
  done
  for n in "$CT" "$BASE"; do
    [ -e "$lab/lxc/$n/config" ] || continue
    lxc-destroy -P "$lab/lxc" -n "$n" -f >/dev/null 2>&1 || true
  done
  awk -v d="$lab/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r | while read -r mp; do
    umount -l "$mp" 2>/dev/null || true
  done
  rm -rf --one-file-system "$lab"
}

remove_net() {
  if ip link show "$VETH" >/dev/null 2>&1; then ip link del "$VETH" 2>/dev/null || true; fi
  if ip link show "$BR" >/dev/null 2>&1; then
    # any other veth still enslaved to our bridge is ours too
    local v
    for v in $(ip -o link show master "$BR" 2>/dev/null | awk -F': ' '{ print $2 }' | cut -d@ -f1); do
      ip link del "$v" 2>/dev/null || true
    done
    ip link del "$BR" 2>/dev/null || true
  fi
}

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  if [ -n "$BG" ] && kill -0 "$BG" 2>/dev/null; then
    kill "$BG" 2>/dev/null
    wait "$BG" 2>/dev/null
  fi
  if [ "$rc" != 0 ] && [ -n "$LAB" ] && [ -d "$LAB" ]; then
    log "failed (exit $rc); logs follow"
    for f in "$LAB"/*.log; do
      [ -s "$f" ] || continue
      echo "----- $f (last 40 lines)" >&2
      tail -n 40 "$f" >&2
    done
  fi
  if [ "${SMOKE_KEEP:-0}" = 1 ] && [ -n "$LAB" ]; then
    # keep the logs, drop the containers and the rootfs
    for n in "$CT" "$BASE"; do
      lxc-stop -P "$LAB/lxc" -n "$n" -k >/dev/null 2>&1
      lxc-destroy -P "$LAB/lxc" -n "$n" -f >/dev/null 2>&1
    done
    rm -rf --one-file-system "$LAB/lxc"
    log "kept $LAB"
  else
    remove_lab "$LAB"
  fi
  remove_net
  remove_cgroups
  # check that nothing is left
  local left=""
  ip link show "$BR" >/dev/null 2>&1 && left+=" bridge:$BR"
  ip link show "$VETH" >/dev/null 2>&1 && left+=" veth:$VETH"
  for d in /sys/fs/cgroup/*/lxc.payload."$CT" /sys/fs/cgroup/*/lxc.monitor."$CT"; do
    [ -d "$d" ] && left+=" $d"
  done
  if [ "${SMOKE_KEEP:-0}" != 1 ] && [ -n "$LAB" ] && [ -e "$LAB" ]; then left+=" $LAB"; fi
  if [ -n "$left" ]; then
    log "LEFTOVERS:$left"
    [ "$rc" = 0 ] && rc=1
  else
    log "cleanup complete: no bridge, veth, container, rootfs or cgroup folder left"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# leftovers of an earlier run that was killed (we hold the lock, so none is running)
for old in "${TMPDIR:-/tmp}"/slices-smoke.*; do
  [ -d "$old" ] || continue
  log "removing leftovers of an earlier run: $old"
  remove_lab "$old"
done
remove_net
remove_cgroups

# --- template ---------------------------------------------------------------------------
t=$(now)
TEMPLATE=$("$HERE/os-template.sh")
timing "template" "$(since "$t")"
log "template: $TEMPLATE"

LAB=$(mktemp -d "${TMPDIR:-/tmp}/slices-smoke.XXXXXX")
LXCP=$LAB/lxc
mkdir -p "$LXCP"
log "lab folder: $LAB"

# --- bridge -----------------------------------------------------------------------------
ip link add "$BR" type bridge
ip addr add "$BR_ADDR/24" dev "$BR"
ip link set "$BR" up

# --- extract the template once into the base rootfs ----------------------------------------
t=$(now)
mkdir -p "$LXCP/$BASE/rootfs"
# in the background with `wait`, so that an INT/TERM is handled at once (cleanup ends tar)
tar -C "$LXCP/$BASE/rootfs" --numeric-owner -xzf "$TEMPLATE" &
BG=$!
wait "$BG"
BG=""
timing "extract" "$(since "$t")"

# Container config of docs/lab.md. $1 name, $2 rootfs path (with its storage prefix).
write_config() {
  cat <<EOF
lxc.include = /usr/share/lxc/config/common.conf
lxc.arch = linux64
lxc.apparmor.profile = unconfined
lxc.rootfs.path = $2
lxc.uts.name = $1
lxc.net.0.type = veth
lxc.net.0.link = $BR
lxc.net.0.flags = up
lxc.net.0.name = eth0
lxc.net.0.veth.pair = $VETH
lxc.net.0.hwaddr = $HWADDR
lxc.net.0.ipv4.address = $CT_ADDR/24
lxc.net.0.ipv4.gateway = $BR_ADDR
lxc.cgroup.memory.limit_in_bytes = $MEM_LIMIT
lxc.cgroup.pids.max = $PIDS_MAX
lxc.signal.halt = SIGRTMIN+3
lxc.console.logfile = $LAB/$1.console.log
EOF
}

# --- create the container ----------------------------------------------------------------
t=$(now)
write_config "$BASE" "dir:$LXCP/$BASE/rootfs" >"$LAB/$BASE.conf"
lxc-create -P "$LXCP" -n "$BASE" -t none -f "$LAB/$BASE.conf" -o "$LAB/lxc-create.log" -l INFO >&2
CLONE_USED=""
if [ "$CLONE_MODE" = overlay ]; then
  if lxc-copy -P "$LXCP" -n "$BASE" -N "$CT" -s -B overlay -o "$LAB/lxc-copy.log" -l INFO >&2; then
    CLONE_USED=overlay
  else
    log "lxc-copy -s -B overlay failed; falling back to a plain copy"
    lxc-destroy -P "$LXCP" -n "$CT" -f >/dev/null 2>&1 || true
    rm -rf --one-file-system "${LXCP:?}/$CT"
  fi
fi
if [ -z "$CLONE_USED" ]; then
  mkdir -p "$LXCP/$CT"
  cp -a "$LXCP/$BASE/rootfs" "$LXCP/$CT/rootfs"
  write_config "$CT" "dir:$LXCP/$CT/rootfs" >"$LAB/$CT.conf"
  lxc-create -P "$LXCP" -n "$CT" -t none -f "$LAB/$CT.conf" -o "$LAB/lxc-create.log" -l INFO >&2
  CLONE_USED=copy
else
  # lxc-copy gave the clone a new random MAC and keeps the base's other settings: put the
  # fixed MAC back (the IP and the rest are what we want already)
  sed -i "s|^lxc.net.0.hwaddr = .*|lxc.net.0.hwaddr = $HWADDR|" "$LXCP/$CT/config"
  sed -i "s|^lxc.console.logfile = .*|lxc.console.logfile = $LAB/$CT.console.log|" "$LXCP/$CT/config"
fi
timing "create ($CLONE_USED)" "$(since "$t")"
log "rootfs of $CT: $(grep '^lxc.rootfs.path' "$LXCP/$CT/config")"
grep -q "^lxc.net.0.hwaddr = $HWADDR\$" "$LXCP/$CT/config" || die "hwaddr not set in the config"
grep -q "^lxc.uts.name = $CT\$" "$LXCP/$CT/config" || die "uts name not set in the config"

# --- start and wait for sshd ---------------------------------------------------------------
# A banner line from sshd on $CT_ADDR:22 within 1 s?
ssh_banner() {
  timeout 1 bash -c "exec 3<>/dev/tcp/$CT_ADDR/22 && head -c 7 <&3" 2>/dev/null
}
ip neigh flush dev "$BR" to "$CT_ADDR" 2>/dev/null || true
t=$(now)
lxc-start -P "$LXCP" -n "$CT" -d -o "$LAB/lxc-start.log" -l INFO
lxc-wait -P "$LXCP" -n "$CT" -s RUNNING -t 10
running_after=$(since "$t")
deadline=$((SECONDS + 60))
until [ "$(ssh_banner)" = "SSH-2.0" ]; do
  [ "$SECONDS" -lt "$deadline" ] || die "sshd on $CT_ADDR:22 did not answer within 60 s"
  sleep 0.05
done
timing "start-to-RUNNING" "$running_after"
timing "start-to-sshd" "$(since "$t")"

# --- user, key, ssh login -------------------------------------------------------------------
t=$(now)
lxc-attach -P "$LXCP" -n "$CT" -- useradd -m -s /bin/bash alice
ssh-keygen -q -t ed25519 -N '' -C smoke@slices -f "$LAB/id_ed25519"
lxc-attach -P "$LXCP" -n "$CT" -- sh -c '
  set -e
  install -d -m 700 -o alice -g alice /home/alice/.ssh
  cat > /home/alice/.ssh/authorized_keys
  chown alice:alice /home/alice/.ssh/authorized_keys
  chmod 600 /home/alice/.ssh/authorized_keys' <"$LAB/id_ed25519.pub"
lxc-attach -P "$LXCP" -n "$CT" -- ls -ln /home/alice/.ssh/authorized_keys >&2
timing "useradd+key" "$(since "$t")"

SSH_OPTS=(-i "$LAB/id_ed25519" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
  -o BatchMode=yes -o IdentitiesOnly=yes -o ConnectTimeout=10 -o LogLevel=ERROR)
t=$(now)
out=$(ssh "${SSH_OPTS[@]}" "alice@$CT_ADDR" hostname)
timing "ssh login" "$(since "$t")"
[ "$out" = "$CT" ] || die "ssh alice@$CT_ADDR hostname printed '$out', expected '$CT'"
log "ssh alice@$CT_ADDR hostname -> $out"
# shellcheck disable=SC2016 # expanded inside the container
info=$(lxc-attach -P "$LXCP" -n "$CT" -- sh -c \
  'echo "shadow password field of alice: $(getent shadow alice | cut -d: -f2)"; /usr/sbin/sshd -T | grep -E "^(usepam|pubkeyauthentication|passwordauthentication) "' | tr '\n' ' ')
log "sshd: $info"
who=$(ssh "${SSH_OPTS[@]}" "alice@$CT_ADDR" 'id -un; cat /etc/machine-id; ls /etc/ssh/ssh_host_*_key.pub | wc -l')
log "as alice: $(echo "$who" | tr '\n' ' ')"

# how systemd fared inside (information only)
state=$(lxc-attach -P "$LXCP" -n "$CT" -- systemctl is-system-running 2>/dev/null) || true
failed=$(lxc-attach -P "$LXCP" -n "$CT" -- systemctl --failed --no-legend --plain 2>/dev/null |
  awk '{ print $1 }' | tr '\n' ' ') || true
log "systemd in the container: ${state:-?}; failed units: ${failed:-none}"
lxc-attach -P "$LXCP" -n "$CT" -- systemd-analyze blame 2>/dev/null | head -n 5 | sed 's/^/    /' >&2 || true

# python3 -m http.server inside, fetched from the host (own bridge address only)
lxc-attach -P "$LXCP" -n "$CT" -- sh -c \
  'cd /tmp && echo slices-smoke-ok > index.html && (setsid python3 -m http.server 8000 >/dev/null 2>&1 &)'
body=""
for _ in $(seq 1 100); do
  body=$(timeout 2 bash -c "exec 3<>/dev/tcp/$CT_ADDR/8000 && printf 'GET /index.html HTTP/1.0\r\n\r\n' >&3 && cat <&3" 2>/dev/null | tail -n 1) || true
  [ "$body" = slices-smoke-ok ] && break
  sleep 0.1
done
[ "$body" = slices-smoke-ok ] || die "python3 -m http.server in the container did not answer"
log "python3 -m http.server in the container answers"

# --- cgroup counters ------------------------------------------------------------------------
pid=$(lxc-info -P "$LXCP" -n "$CT" -p -H)
log "init pid $pid; /proc/$pid/cgroup:"
sed 's/^/    /' "/proc/$pid/cgroup" >&2
mem_dir=/sys/fs/cgroup/memory/lxc.payload.$CT
pids_dir=/sys/fs/cgroup/pids/lxc.payload.$CT
[ -d "$mem_dir" ] || mem_dir=/sys/fs/cgroup/memory$(awk -F: '$2 == "memory" { print $3 }' "/proc/$pid/cgroup")
[ -d "$pids_dir" ] || pids_dir=/sys/fs/cgroup/pids$(awk -F: '$2 == "pids" { print $3 }' "/proc/$pid/cgroup")
for f in "$mem_dir"/memory.usage_in_bytes "$mem_dir"/memory.max_usage_in_bytes \
  "$mem_dir"/memory.limit_in_bytes "$mem_dir"/memory.failcnt \
  "$pids_dir"/pids.current "$pids_dir"/pids.max; do
  [ -r "$f" ] || die "cannot read $f"
  log "$(printf '%-62s %s' "$f" "$(cat "$f")")"
done
[ "$(cat "$mem_dir/memory.limit_in_bytes")" = $((256 * 1024 * 1024)) ] || die "memory limit not applied"
[ "$(cat "$pids_dir/pids.max")" = "$PIDS_MAX" ] || die "pids limit not applied"
log "lxc-cgroup memory.usage_in_bytes: $(lxc-cgroup -P "$LXCP" -n "$CT" memory.usage_in_bytes)"
ip link show "$VETH" >/dev/null || die "host veth $VETH not found"

# --- stop, destroy ---------------------------------------------------------------------------
t=$(now)
lxc-stop -P "$LXCP" -n "$CT" -t 30
timing "stop" "$(since "$t")"
t=$(now)
lxc-destroy -P "$LXCP" -n "$CT"
timing "destroy" "$(since "$t")"
t=$(now)
lxc-destroy -P "$LXCP" -n "$BASE"
timing "destroy base" "$(since "$t")"

log "OK: clone=$CLONE_USED"
printf '%s\n' "${TIMINGS[@]}" >&2
echo "lxc-smoke: OK (clone: $CLONE_USED)"
