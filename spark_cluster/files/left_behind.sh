#!/bin/sh
# What is left of spark-cluster on this node: one line per installed unit file
# matching one of UNIT_PATTERNS ("unit NAME") and per PATH still there ("path PATH").
#
#   left_behind.sh list|check UNIT_PATTERN[,UNIT_PATTERN...] PATH...
#
# list: print them, exit 0 (the uninstall's fact). check: also exit 1 with
# one line on stderr naming them (the uninstall's closing check).
# spark_cluster/uninstall.py sends this file's text with `sh -c` (nothing is installed).

if [ "$#" -lt 2 ]; then
    echo "usage: left_behind.sh list|check UNIT_PATTERN[,UNIT_PATTERN...] PATH..." >&2
    exit 2
fi
mode=$1
patterns=$(echo "$2" | tr ',' ' ')
shift 2
found=""
# shellcheck disable=SC2086 # one word per pattern
units=$(systemctl list-unit-files --no-legend --no-pager $patterns 2>/dev/null | awk '{print $1}')
for unit in $units; do
    echo "unit $unit"
    found="$found $unit"
done
for path in "$@"; do
    if [ -e "$path" ] || [ -L "$path" ]; then
        echo "path $path"
        found="$found $path"
    fi
done
if [ "$mode" = check ] && [ -n "$found" ]; then
    echo "spark-cluster left behind:$found (expected nothing after an uninstall; a QSFP takeover backup" \
        "stays when its original path exists again: compare the two, keep one by hand, then run the" \
        "uninstall again)" >&2
    exit 1
fi
exit 0
