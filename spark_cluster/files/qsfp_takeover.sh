#!/bin/sh
# Move other owners' QSFP configuration aside, restorably: never delete it.
#
#   qsfp_takeover.sh BACKUP_DIR PATH...
#
# Each PATH that still exists moves to BACKUP_DIR/PATH (mv keeps its mode,
# owner and time), its original path is appended to BACKUP_DIR/MANIFEST, and
# BACKUP_DIR/restore.sh (0700) moves every file in MANIFEST back. A PATH already
# gone is skipped, so a second run with the same PATHs changes nothing. If a
# PATH returns after a takeover (someone wrote it again), the first backup is
# kept (it is the state before spark-cluster) and the newer file goes to
# BACKUP_DIR/superseded/<epoch>/PATH, which restore.sh does not touch.
# BACKUP_DIR is 0700: these files can hold secrets (802.1x, Wi-Fi keys).
# For a NetworkManager profile (a keyfile, or a netplan file NetworkManager
# wrote) the connection is taken down first, when nmcli exists (failure
# ignored: it may not be active), and NetworkManager reloads its profiles after.
#
# Prints one line per file moved; nothing when nothing was left to move.
# ROOT (default empty) prefixes every path touched, so tests run against a
# temporary tree; printed and recorded paths never carry it.
# The network role sends this file's text with `sh -c` (nothing is installed).

if [ "$#" -lt 2 ]; then
    echo "usage: qsfp_takeover.sh BACKUP_DIR PATH..." >&2
    exit 2
fi
backup=$1
shift
root=${ROOT:-}
umask 077
store=$root$backup
nm_moved=0
moved=0

# nm_connection FILE: the uuid (else the id) of the NetworkManager connection
# FILE defines, or nothing.
nm_connection() {
    case $1 in
        *.yaml) sed -n 's/^[[:space:]]*uuid:[[:space:]]*["'\'']\{0,1\}\([^"'\'' ]*\).*/\1/p' "$1" | head -n 1 ;;
        *)
            uuid=$(sed -n 's/^uuid=//p' "$1" | head -n 1)
            if [ -n "$uuid" ]; then echo "$uuid"; else sed -n 's/^id=//p' "$1" | head -n 1; fi
            ;;
    esac
}

for path in "$@"; do
    source=$root$path
    { [ -e "$source" ] || [ -L "$source" ]; } || continue
    mkdir -p "$store" || exit 1
    chmod 700 "$store" || exit 1
    target=$store$path
    recorded=1
    if [ -e "$target" ] || [ -L "$target" ]; then
        target=$store/superseded/$(date +%s)$path
        recorded=0
    fi
    is_nm=0
    case $path in
        */NetworkManager/*) is_nm=1 ;;
        *.yaml) grep -qi 'networkmanager' "$source" 2>/dev/null && is_nm=1 ;;
    esac
    if [ "$is_nm" = 1 ] && command -v nmcli >/dev/null 2>&1; then
        connection=$(nm_connection "$source")
        [ -n "$connection" ] && nmcli connection down "$connection" >/dev/null 2>&1
    fi
    mkdir -p "${target%/*}" || exit 1
    mv "$source" "$target" || exit 1
    [ "$recorded" = 1 ] && echo "$path" >>"$store/MANIFEST"
    [ "$is_nm" = 1 ] && nm_moved=1
    moved=1
    echo "moved $path to ${target#"$root"}"
done

if [ "$moved" = 1 ]; then
    # The same text each time: restore.sh reads MANIFEST when it runs.
    cat >"$store/restore.sh" <<'EOF'
#!/bin/sh
# Put back what spark-cluster's QSFP takeover moved aside (listed in MANIFEST
# next to this file). A path that exists again is left alone and kept in
# MANIFEST. Then remove spark-cluster's own netplan file (or set qsfp_takeover
# back to False and edit it) and run `netplan apply`, or the two configurations
# are merged again. ROOT (default empty) prefixes the original paths (tests).
here=$(cd "$(dirname "$0")" && pwd) || exit 1
root=${ROOT:-}
[ -f "$here/MANIFEST" ] || exit 0
umask 077
left=$(mktemp "$here/MANIFEST.XXXXXX") || exit 1
status=0
nm=0
while IFS= read -r path; do
    [ -n "$path" ] || continue
    if [ ! -e "$here$path" ] && [ ! -L "$here$path" ]; then
        continue
    fi
    if [ -e "$root$path" ] || [ -L "$root$path" ]; then
        echo "not restored: $path exists (its backup stays at $here$path)" >&2
        echo "$path" >>"$left"
        status=1
        continue
    fi
    if mkdir -p "$(dirname "$root$path")" && mv "$here$path" "$root$path"; then
        echo "restored $path"
        case $path in
            */NetworkManager/*) nm=1 ;;
            *.yaml) grep -qi networkmanager "$root$path" && nm=1 ;;
        esac
        continue
    fi
    echo "$path" >>"$left"
    status=1
done <"$here/MANIFEST"
mv "$left" "$here/MANIFEST"
# NetworkManager reads its profiles again (netplan-written ones appear after `netplan apply`)
if [ "$nm" = 1 ] && command -v nmcli >/dev/null 2>&1; then nmcli connection reload >/dev/null 2>&1; fi
exit "$status"
EOF
    chmod 700 "$store/restore.sh"
fi

if [ "$nm_moved" = 1 ] && command -v nmcli >/dev/null 2>&1; then
    nmcli connection reload >/dev/null 2>&1 || true
fi
exit 0
