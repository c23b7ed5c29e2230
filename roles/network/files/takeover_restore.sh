#!/bin/sh
# Put back every QSFP configuration a deploy moved aside (qsfp_takeover.sh),
# through each backup's own restore.sh, newest backup first: a path moved
# aside twice comes back as the owner last wrote it.
#
#   takeover_restore.sh TAKEOVER_DIR
#
# A backup whose files are all back is removed; one that still holds a file
# (its original path exists again, or a superseded copy) is kept and named on
# stderr: never is a file of the owner's deleted. Then TAKEOVER_DIR and its
# parent go, where empty. Exit 0 (the uninstall's closing check names what
# stayed); prints one line per file put back.
# ROOT (default empty) prefixes every path touched (tests); restore.sh reads it too.
# The network role sends this file's text with `sh -c` (nothing is installed).

if [ "$#" -ne 1 ]; then
    echo "usage: takeover_restore.sh TAKEOVER_DIR" >&2
    exit 2
fi
root=${ROOT:-}
export ROOT="$root"
dir=$root$1
[ -d "$dir" ] || exit 0
find "$dir" -mindepth 1 -maxdepth 1 -type d | sort -r | while IFS= read -r backup; do
    if [ -f "$backup/restore.sh" ]; then
        sh "$backup/restore.sh"
    fi
    if [ -s "$backup/MANIFEST" ] || [ -e "$backup/superseded" ]; then
        echo "kept ${backup#"$root"}: it still holds files that could not be put back" >&2
    else
        rm -rf "$backup"
    fi
done
rmdir "$dir" 2>/dev/null
rmdir "${dir%/*}" 2>/dev/null
exit 0
