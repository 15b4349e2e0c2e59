#!/usr/bin/env bash
# Builds (once per machine) an OpenVZ-style OS template: a tar.gz of a Debian 12 (bookworm)
# root file system with systemd, sshd, iproute2, ifupdown, python3 and sudo (students are root
# in their slices through sudo). The cache file is named after what it holds.
#
#   scripts/lab/os-template.sh [OUT_FILE]
#
# The template is cached as /var/cache/slices-lab/debian-12-ssh-sudo_amd64.tar.gz (plus a .sha256
# file beside it) and reused when present and intact, so a second run takes well under a
# second. With OUT_FILE (a file or a folder) the cached file is hard-linked there (copied when
# that is another file system). The path of the template (OUT_FILE if given) is the only line
# printed on stdout; progress goes to stderr.
#
# The build is atomic: it happens in a temporary folder next to the cache and the finished
# tar.gz is renamed into place, so an interrupted run never leaves a broken cache. Concurrent
# runs are serialised with flock.
#
# The tarball holds no machine-specific identity: no SSH host keys (a systemd drop-in runs
# `ssh-keygen -A` before sshd on first boot, so every container gets its own keys), an empty
# /etc/machine-id (systemd makes one at first boot), no /etc/hostname (the container keeps the
# hostname LXC gives it) and an empty /etc/resolv.conf.
#
# Environment:
#   SLICES_LAB_CACHE    cache folder (default /var/cache/slices-lab)
#   SLICES_LAB_MIRROR   Debian mirror (default: first URIs: of debian.sources)
#   SLICES_LAB_REBUILD  1 = ignore the cache and build anew
set -euo pipefail

NAME=debian-12-ssh-sudo_amd64.tar.gz
CACHE_DIR=${SLICES_LAB_CACHE:-/var/cache/slices-lab}
CACHE_FILE=$CACHE_DIR/$NAME
SUITE=bookworm
INCLUDE=systemd-sysv,openssh-server,iproute2,ifupdown,python3,sudo
OUT=${1:-}

log() { printf '[os-template] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"

# The Debian mirror this machine may reach: first URIs: value of the deb822 sources file, or
# the first `deb` line of the one-line format.
find_mirror() {
  local m=""
  if [ -r /etc/apt/sources.list.d/debian.sources ]; then
    m=$(awk 'tolower($1) == "uris:" { print $2; exit }' /etc/apt/sources.list.d/debian.sources)
  elif [ -r /etc/apt/sources.list ]; then
    # skip an optional "[ options ]" block after "deb"
    m=$(sed -n 's/^[[:space:]]*deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]\+\).*/\2/p' \
      /etc/apt/sources.list | head -n 1)
  fi
  [ -n "$m" ] || die "no Debian mirror found in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list"
  printf '%s\n' "$m"
}

# Is the cached template there and does it match its checksum?
cache_ok() {
  [ -s "$CACHE_FILE" ] && [ -s "$CACHE_FILE.sha256" ] &&
    (cd "$CACHE_DIR" && sha256sum --status -c "$NAME.sha256")
}

# Unmount whatever a killed debootstrap left mounted under $1, then delete $1.
remove_build_dir() {
  local dir=$1 mp
  [ -d "$dir" ] || return 0
  # deepest mount points first
  awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r | while read -r mp; do
    umount -l "$mp" 2>/dev/null || true
  done
  rm -rf --one-file-system "$dir"
}

publish() {
  local src=$CACHE_FILE dst=$OUT
  if [ -z "$dst" ]; then
    printf '%s\n' "$src"
    return
  fi
  [ -d "$dst" ] && dst=${dst%/}/$NAME
  if [ "$(readlink -f "$dst")" != "$(readlink -f "$src")" ]; then
    local tmp
    tmp=$(dirname "$dst")/.$(basename "$dst").tmp.$$
    if ! ln -f "$src" "$tmp" 2>/dev/null; then
      cp -f "$src" "$tmp"
    fi
    mv -f "$tmp" "$dst"
  fi
  printf '%s\n' "$dst"
}

mkdir -p "$CACHE_DIR"

# Leftovers of runs that were killed. Call only while holding the lock: no build is running
# then (a debootstrap orphaned by a SIGKILL keeps the lock's file descriptor, hence the lock).
remove_stale_builds() {
  local d
  for d in "$CACHE_DIR"/.build.*; do
    [ -e "$d" ] || continue
    log "removing stale $d"
    remove_build_dir "$d"
  done
}

exec 9>"$CACHE_DIR/.lock"

# Fast path: a complete cache is never modified in place, so no need to wait for the lock.
if [ "${SLICES_LAB_REBUILD:-0}" != 1 ] && cache_ok; then
  log "using cached $CACHE_FILE"
  if flock -n 9; then remove_stale_builds; fi
  publish
  exit 0
fi

log "waiting for the build lock $CACHE_DIR/.lock"
flock 9

# Another run may have finished the build while we waited.
if [ "${SLICES_LAB_REBUILD:-0}" != 1 ] && cache_ok; then
  log "using cached $CACHE_FILE (built by a concurrent run)"
  publish
  exit 0
fi

remove_stale_builds

if ! command -v debootstrap >/dev/null 2>&1; then
  log "installing debootstrap"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >&2
fi

MIRROR=${SLICES_LAB_MIRROR:-$(find_mirror)}
BUILD=$(mktemp -d "$CACHE_DIR/.build.XXXXXX")
CHILD=""
on_exit() {
  # a debootstrap still running (we were interrupted): end its whole process group first
  if [ -n "$CHILD" ] && kill -0 "$CHILD" 2>/dev/null; then
    kill -TERM -- "-$CHILD" 2>/dev/null || true
    wait "$CHILD" 2>/dev/null || true
  fi
  remove_build_dir "$BUILD"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
ROOTFS=$BUILD/rootfs

start=$(date +%s)
log "debootstrap $SUITE from $MIRROR into $ROOTFS (about a minute)"
# In its own process group (setsid), in the background with `wait`, so that a TERM/INT sent to
# this script is handled at once and can end debootstrap and its dpkg children.
setsid debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$ROOTFS" "$MIRROR" \
  >"$BUILD/debootstrap.log" 2>&1 </dev/null &
CHILD=$!
db_rc=0
wait "$CHILD" || db_rc=$?
CHILD=""
if [ "$db_rc" != 0 ]; then
  tail -n 30 "$BUILD/debootstrap.log" >&2
  [ -f "$ROOTFS/debootstrap/debootstrap.log" ] && tail -n 30 "$ROOTFS/debootstrap/debootstrap.log" >&2
  die "debootstrap failed"
fi
log "debootstrap took $(($(date +%s) - start)) s"

# --- make the root file system a template rather than a copy of one machine ---

# SSH host keys: none in the tarball; generate missing ones right before sshd starts.
rm -f "$ROOTFS"/etc/ssh/ssh_host_*
mkdir -p "$ROOTFS/etc/systemd/system/ssh.service.d"
cat >"$ROOTFS/etc/systemd/system/ssh.service.d/slices-hostkeys.conf" <<'EOF'
# Slices OS template: the template ships without SSH host keys, so that every container made
# from it gets its own. Generate the missing ones (ssh-keygen -A is idempotent) before the
# config test that Debian's ssh.service runs.
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
EOF
grep -q '^RuntimeDirectory=sshd' "$ROOTFS/lib/systemd/system/ssh.service" ||
  die "ssh.service does not create /run/sshd (RuntimeDirectory=sshd missing)"
[ -e "$ROOTFS/etc/systemd/system/multi-user.target.wants/ssh.service" ] ||
  die "ssh.service is not enabled in the rootfs"

# Identity of the build host / of this build.
: >"$ROOTFS/etc/machine-id"
rm -f "$ROOTFS/var/lib/dbus/machine-id"
rm -f "$ROOTFS/etc/hostname"
: >"$ROOTFS/etc/resolv.conf"
chmod 0644 "$ROOTFS/etc/resolv.conf"
cat >"$ROOTFS/etc/hosts" <<'EOF'
127.0.0.1	localhost
::1		localhost ip6-localhost ip6-loopback
ff02::1		ip6-allnodes
ff02::2		ip6-allrouters
EOF
# Loopback only; LXC (or vzctl) configures eth0 from the host.
if [ ! -s "$ROOTFS/etc/network/interfaces" ]; then
  mkdir -p "$ROOTFS/etc/network"
  printf 'auto lo\niface lo inet loopback\n\nsource /etc/network/interfaces.d/*\n' \
    >"$ROOTFS/etc/network/interfaces"
fi
# Package caches (also excluded from the tar below).
rm -f "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/cache/apt/*.bin
find "$ROOTFS/var/lib/apt/lists" -maxdepth 1 -type f -delete 2>/dev/null || true

log "packing the template"
tar -C "$ROOTFS" --numeric-owner \
  --exclude='./var/cache/apt/archives/*.deb' --exclude='./var/lib/apt/lists/*_*' \
  --exclude='./var/cache/apt/*.bin' \
  -czf "$BUILD/$NAME" .
(cd "$BUILD" && sha256sum "$NAME" >"$NAME.sha256")

# Publish: checksum first, then the tarball by rename (atomic on one file system). A run that
# dies between the two leaves a checksum without a tarball: cache_ok fails and it is rebuilt.
mv -f "$BUILD/$NAME.sha256" "$CACHE_FILE.sha256"
mv -f "$BUILD/$NAME" "$CACHE_FILE"
log "built $CACHE_FILE ($(du -h "$CACHE_FILE" | cut -f1)) in $(($(date +%s) - start)) s"
publish
