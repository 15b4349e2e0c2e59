#!/usr/bin/env bash
# Runs every test of Slices on a fresh machine of this kind (Debian 12, root): installs what
# the system tests need, then checks formatting and lints, then runs all tests.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the system tests drive (real sshd, Apache, LXC, SMTP, Chromium, ...).
# Each later part adds its own here; missing ones are installed, present ones are left alone.
packages=(sudo lxc debootstrap e2fsprogs openssh-client openssh-server openssh-sftp-server apache2 iptables iproute2 python3-aiosmtpd chromium chromium-driver slapd ldap-utils)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Each slice's disk is an ext4 image on a loop device: the loop driver must be there.
[ -e /dev/loop-control ] || modprobe loop

# The OS template the LXC system tests make slices from: built once per machine, then cached.
export TEST_SLICES_TEMPLATE
TEST_SLICES_TEMPLATE=$(bash scripts/lab/os-template.sh)
export TEST_SLICES_SYSTEM=1

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --locked
