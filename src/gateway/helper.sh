#!/bin/sh
# slices-gateway: the one program the Slices master runs on the gateway host, as root (through
# `sudo -n` when the master logs in as another account). Its two paths are written in when it
# is made (`slices gateway helper`, from the master's configuration): it takes no path from
# its caller. It only reads and writes the users folder and the map file below, only touches
# accounts whose login shell is in that folder, and writes only the files it knows, with
# owners and modes it chooses itself. Install: see docs/gateway.md. Every argument and every
# archive entry is checked here, whatever the master checked.
#
#   slices-gateway version
#   slices-gateway read [USER]       sections "NAME BYTES\n" + bytes: passwd, tar (the folder,
#                                    no private keys), map, sshd (the Slices block of sshd's
#                                    configuration), hops ("USER HEADER" lines: each private
#                                    hop key's clear header, which names its public half)
#   slices-gateway apply [+USER|-USER|sshd]...   stdin: a tar of the users' files to write
#                                    (plain files only: USER.sh, USER/.ssh/{authorized_keys,
#                                    slice_ed25519,slice_ed25519.pub,known_hosts} and
#                                    .slices-map.new); +USER makes an account, -USER removes
#                                    one, sshd puts the Slices block in sshd's configuration
set -u
umask 022
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
d='@USERS_DIR@'
m='@MAP_FILE@'
c='@SSHD_CONFIG@'
# Every account the helper makes is in this group; sshd's block below applies to it.
g=slices-users

die() { echo "slices-gateway: $*" >&2; exit 2; }
name_ok() {
    case "$1" in
        [a-z]*) case "$1" in *[!a-z0-9_-]*) return 1 ;; esac ;;
        *) return 1 ;;
    esac
    [ "${#1}" -le 32 ]
}
path_ok() {
    case "$1" in /?*) ;; *) return 1 ;; esac
    case "$1" in *[!A-Za-z0-9/._-]* | */../* | */.. | */./* | */ ) return 1 ;; esac
}
shell_of() { getent passwd "$1" | cut -d: -f7; }
path_ok "$d" && path_ok "$m" && path_ok "$c" || die "this helper was made with a bad path"

# What slice users may not do through the gateway: they only hop into their slice.
sshd_block() {
    cat <<'BLOCK'
# BEGIN slices: the gateway's students (kept by slices-gateway; edits are put back)
Match Group slices-users
    AllowTcpForwarding no
    AllowStreamLocalForwarding no
    AllowAgentForwarding no
    X11Forwarding no
    PermitTunnel no
    PermitUserRC no
    GatewayPorts no
# END slices
BLOCK
}

# The Slices block as it is in sshd's configuration now (empty when there is none).
sshd_current() {
    [ -f "$c" ] || return 0
    awk '/^# BEGIN slices/ { on = 1 } on { print } /^# END slices/ { on = 0 }' "$c"
}

# Puts the block at the end of sshd's configuration (replacing an old one), checks the result
# with `sshd -t` (the old file stays when sshd refuses it) and tells sshd to read it again.
sshd_install() {
    [ -f "$c" ] || die "there is no sshd configuration at $c"
    awk '/^# BEGIN slices/ { skip = 1 } !skip { print } /^# END slices/ { skip = 0 }' "$c" > "$t/sshd.new" || exit 1
    sshd_block >> "$t/sshd.new"
    sshd -t -f "$t/sshd.new" 2> "$t/sshd.err" || die "sshd refuses its configuration with the Slices block ($(cat "$t/sshd.err")); $c is unchanged"
    cp -p -- "$c" "$c.slices-new" && cat "$t/sshd.new" > "$c.slices-new" && mv -f -- "$c.slices-new" "$c" || exit 1
    pidfile=$(sshd -T -f "$c" 2>/dev/null | awk '$1 == "pidfile" { print $2 }')
    if [ -n "$pidfile" ] && [ -f "$pidfile" ]; then
        kill -HUP "$(cat "$pidfile")" 2>/dev/null || true
    fi
}

op="${1:-}"
[ $# -gt 0 ] && shift
case "$op" in
version)
    echo "@VERSION@"
    ;;
read)
    [ $# -le 1 ] || die "read [USER]"
    u="${1:-}"
    [ -z "$u" ] || name_ok "$u" || die "bad user name"
    t=$(mktemp -d) || exit 1
    trap 'rm -rf "$t"' EXIT
    if [ -n "$u" ]; then getent passwd "$u" > "$t/passwd"; else getent passwd > "$t/passwd"; fi
    : > "$t/tar"
    if [ -d "$d" ]; then
        if [ -n "$u" ]; then
            (cd "$d" && tar -cf "$t/tar" --ignore-failed-read --no-recursion \
                "./$u.sh" "./$u" "./$u/.ssh/authorized_keys" "./$u/.ssh/slice_ed25519.pub") 2>/dev/null
        else
            (cd "$d" && tar -cf "$t/tar" --anchored --exclude=./.slices-map.new \
                --exclude='./*/.ssh/slice_ed25519' --exclude='./*/.ssh/known_hosts' .) || exit 1
        fi
    fi
    if [ -f "$m" ]; then cp -- "$m" "$t/map" || exit 1; part=map; else : > "$t/map"; part=nomap; fi
    for p in passwd tar; do
        echo "$p $(wc -c < "$t/$p")"
        cat "$t/$p"
    done
    echo "$part $(wc -c < "$t/map")"
    cat "$t/map"
    if [ -f "$c" ]; then sshd_current > "$t/sshd"; part=sshd; else : > "$t/sshd"; part=nosshd; fi
    echo "$part $(wc -c < "$t/sshd")"
    cat "$t/sshd"
    # Each private hop key's clear header (its second and third lines: the format's magic,
    # "none" cipher and KDF, and the public half), never the key: plain files only, read by
    # one awk (a loop over 2,000 users in sh cost most of a second).
    : > "$t/hops"
    hop_header='
                FNR == 1 { n = split(FILENAME, p, "/"); name = p[n - 2]
                           ok = name ~ /^[a-z][a-z0-9_-]*$/ && length(name) <= 32 && (u == "" || u == name) }
                ok && FNR == 2 { h = $0 }
                ok && FNR == 3 { print name, h $0 }'
    if [ -n "$u" ]; then
        k="$d/$u/.ssh/slice_ed25519"
        if [ -f "$k" ] && [ ! -L "$k" ]; then awk -v u="$u" "$hop_header" "$k" > "$t/hops"; fi
    elif [ -d "$d" ]; then
        find "$d" -mindepth 3 -maxdepth 3 -type f -path "$d/*/.ssh/slice_ed25519" \
            -exec awk -v u="$u" "$hop_header" {} + > "$t/hops"
    fi
    echo "hops $(wc -c < "$t/hops")"
    cat "$t/hops"
    ;;
apply)
    for a in "$@"; do
        case "$a" in
            +* | -*) name_ok "${a#?}" || die "bad user name in $a" ;;
            sshd) ;;
            *) die "bad argument $a" ;;
        esac
    done
    t=$(mktemp -d) || exit 1
    trap 'rm -rf "$t"' EXIT
    # The archive is checked whole before anything is written: plain files only, no special
    # mode bits, and only the names this helper writes.
    cat > "$t/in.tar" || exit 1
    if [ -s "$t/in.tar" ]; then
        tar -tf "$t/in.tar" > "$t/names" 2>/dev/null || die "the archive cannot be read"
        tar -tvf "$t/in.tar" > "$t/list" 2>/dev/null || die "the archive cannot be read"
        bad=$(awk 'substr($1, 1, 1) != "-" || $1 ~ /[sStT]/ { print; exit }' "$t/list")
        [ -z "$bad" ] || die "the archive holds something other than a plain file: $bad"
        while IFS= read -r p; do
            case "$p" in
                .slices-map.new) continue ;;
                */.ssh/authorized_keys | */.ssh/slice_ed25519 | */.ssh/slice_ed25519.pub | */.ssh/known_hosts)
                    u="${p%%/*}" ;;
                *.sh) u="${p%.sh}" ;;
                *) die "the archive holds a file this helper does not write: $p" ;;
            esac
            name_ok "$u" || die "the archive holds a file this helper does not write: $p"
            case "$p" in "$u.sh" | "$u/.ssh/"*) ;; *) die "the archive holds a file this helper does not write: $p" ;; esac
            echo "$u" >> "$t/owners"
        done < "$t/names"
    else
        : > "$t/names"
    fi
    install -d -m 755 -o root -g root "$d" || exit 1
    groupadd -f "$g" || exit 1
    : > "$t/clash"
    : > "$t/adds"
    for a in "$@"; do
        case "$a" in +*) echo "${a#+}" >> "$t/adds" ;; esac
    done
    if [ -s "$t/adds" ]; then
        getent passwd > "$t/passwd"
        # Never take over an account Slices did not make: such a name is left out, with its
        # files, and reported (`clash NAME` on standard output); everyone else goes ahead.
        awk -F: -v d="$d" 'NR == FNR { want[$1] = 1; next }
            ($1 in want) && $7 != d "/" $1 ".sh" { print $1 }' "$t/adds" "$t/passwd" > "$t/clash"
        grep -vxF -f "$t/clash" "$t/adds" > "$t/adds.ok" || true
        mv -f "$t/adds.ok" "$t/adds"
        # New accounts in one go: newusers with no password (it then complains that it set
        # none, and leaves them locked), checked, then key-only: password field `*`.
        awk -F: -v d="$d" -v g="$g" 'NR == FNR { have[$1] = 1; next }
            !($1 in have) { print $1 ":::" g ":Slices user:" d "/" $1 ":" d "/" $1 ".sh" }' \
            "$t/passwd" "$t/adds" > "$t/new"
        if [ -s "$t/new" ]; then
            newusers < "$t/new" 2> "$t/newusers.err"
            getent passwd > "$t/passwd"
            missing=$(awk -F: -v d="$d" 'NR == FNR { ok[$1] = ($7 == d "/" $1 ".sh"); next }
                !ok[$1] { printf "%s ", $1 }' "$t/passwd" "$t/new")
            [ -z "$missing" ] || die "could not make accounts $missing: $(grep -v 'No password\|pam_chauthtok\|manipulation\|password not changed' "$t/newusers.err")"
            awk -F: '{ print $1 ":*" }' "$t/new" | chpasswd -e || exit 1
        fi
        # Homes and .ssh belong to root: a student can change nothing here.
        if [ -s "$t/adds" ]; then
            awk -v d="$d" '{ print d "/" $1; print d "/" $1 "/.ssh" }' "$t/adds" |
                xargs install -d -m 755 -o root -g root || exit 1
        fi
    fi
    # Files only for accounts Slices made (their login shell is in the users folder).
    if [ -s "$t/names" ]; then
        : > "$t/exclude"
        if [ -f "$t/owners" ]; then
            for u in $(sort -u "$t/owners"); do
                if grep -qxF "$u" "$t/clash"; then
                    printf '%s.sh\n%s/*\n' "$u" "$u" >> "$t/exclude"
                    continue
                fi
                [ "$(shell_of "$u")" = "$d/$u.sh" ] || die "files for $u, which is not an account Slices made"
            done
        fi
        # Owned by root, modes from the umask (never the archive's); then the helper's own.
        tar -x -C "$d" --no-same-owner --no-same-permissions --anchored -X "$t/exclude" \
            -f "$t/in.tar" || exit 1
        while IFS= read -r p; do
            case "$p" in .slices-map.new) ;; *) grep -qxF "${p%%[./]*}" "$t/clash" && continue ;; esac
            f="$d/$p"
            case "$p" in
                .slices-map.new) chown root:root "$f" && chmod 644 "$f" ;;
                *.sh) chown root:root "$f" && chmod 755 "$f" ;;
                */.ssh/slice_ed25519) chown "${p%%/*}:" "$f" && chmod 600 "$f" ;;
                *) chown root:root "$f" && chmod 644 "$f" ;;
            esac || exit 1
        done < "$t/names"
    fi
    if [ -f "$d/.slices-map.new" ]; then
        cp -- "$d/.slices-map.new" "$m.slices-new" && chmod 644 "$m.slices-new" &&
            mv -f -- "$m.slices-new" "$m" && rm -f -- "$d/.slices-map.new" || exit 1
    fi
    # Every account Slices made is in the group (those made before the group existed too).
    gid=$(getent group "$g" | cut -d: -f3)
    getent group "$g" | cut -d: -f4 | tr ',' '\n' > "$t/members"
    getent passwd | awk -F: -v d="$d" -v gid="$gid" 'NR == FNR { m[$1] = 1; next }
        $7 == d "/" $1 ".sh" && $4 != gid && !($1 in m) { print $1 }' "$t/members" - > "$t/outside"
    while IFS= read -r u; do usermod -a -G "$g" "$u" || exit 1; done < "$t/outside"
    for a in "$@"; do
        [ "$a" = sshd ] && sshd_install
    done
    sed 's/^/clash /' "$t/clash"
    for a in "$@"; do
        case "$a" in -*) ;; *) continue ;; esac
        u="${a#-}"
        if [ "$(shell_of "$u")" = "$d/$u.sh" ]; then
            pkill -KILL -u "$u" 2>/dev/null
            userdel -f "$u" 2>/dev/null || userdel "$u" || exit 1
        fi
        rm -rf -- "$d/$u" "$d/$u.sh"
    done
    ;;
*)
    die "unknown operation '$op' (version, read, apply)"
    ;;
esac
