#!/bin/sh
# A cheap identity of a model directory tree, four lines: the sha256 of its
# sorted listing (relative path, size, symlink target of each file and link),
# how many files and links it holds, their total bytes, and how many of them
# are a download still in progress or cut short (the Hugging Face hub writes
# blobs/<hash>.incomplete until a file is whole). Nothing when DIR is absent.
#
#   model_manifest.sh DIR
#
# The listing stays in a shell variable: a temporary file under /tmp,
# written as root with a guessable name, is what a careful tool avoids.
# Preflight and the distribute role send this file's text with `sh -c` (nothing is installed).

if [ "$#" -ne 1 ]; then
    echo "usage: model_manifest.sh DIR" >&2
    exit 2
fi
[ -d "$1" ] || exit 0
cd "$1" || exit 1
list=$(find . -mindepth 1 \( -type f -o -type l \) -printf '%P\t%s\t%l\n' | LC_ALL=C sort)
printf '%s\n' "$list" | sha256sum | cut -d' ' -f1
printf '%s\n' "$list" | grep -c .
printf '%s\n' "$list" | awk -F'\t' '{s+=$2} END {print s+0}'
printf '%s\n' "$list" | awk -F'\t' '$1 ~ /^blobs\/[^\/]*\.incomplete$/ {n++} END {print n+0}'
