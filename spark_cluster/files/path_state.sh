#!/bin/sh
# The state of managed paths, one line per PATH, in order:
#   absent | link | other | directory MODE USER GROUP | file MODE USER GROUP SHA1
# then one line per FILE LINE pair: "has" when FILE holds LINE as a whole
# line, else "lacks" (also when FILE is absent or unreadable).
#
#   path_state.sh COUNT [PATH...] [FILE LINE]...
#
# COUNT is how many PATHs come first; the pairs follow them. A symlink is
# "link", never taken for what it points to.
# spark_cluster/file_state.py sends this file's text with `sh -c` (nothing is installed).

usage() {
    echo "usage: path_state.sh COUNT [PATH...] [FILE LINE]..." >&2
    exit 2
}
[ "$#" -ge 1 ] || usage
case $1 in
    '' | *[!0-9]*) usage ;;
esac
count=$1
shift
if [ "$#" -lt "$count" ] || [ $(( ($# - count) % 2 )) -ne 0 ]; then
    usage
fi

while [ "$count" -gt 0 ]; do
    p=$1
    shift
    count=$((count - 1))
    if [ -L "$p" ]; then
        echo link
    elif [ -d "$p" ]; then
        echo "directory $(stat -c '%a %U %G' "$p")"
    elif [ -f "$p" ]; then
        echo "file $(stat -c '%a %U %G' "$p") $(sha1sum < "$p" | cut -c1-40)"
    elif [ -e "$p" ]; then
        echo other
    else
        echo absent
    fi
done
while [ "$#" -gt 0 ]; do
    if grep -qxF -e "$2" "$1" 2>/dev/null; then echo has; else echo lacks; fi
    shift 2
done
