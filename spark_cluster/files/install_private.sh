#!/bin/sh
# Put a staged file that can hold a secret at its destination, readable by
# nobody but its owner on the way:
#
#   install_private.sh STAGE_DIR DEST OWNER GROUP MODE
#
# STAGE_DIR is the login user's fresh 0700 directory holding the upload as
# STAGE_DIR/upload (spark_cluster/private_file.py made it, without sudo).
# The copy is made beside DEST (same filesystem) under umask 077, given its
# owner and mode, then renamed over DEST: DEST is always either the old file
# or the whole new one, and never more readable than MODE. STAGE_DIR is
# removed whether or not the copy succeeded.
# The private_file operation sends this file's text with `sh -c` under sudo.

if [ "$#" -ne 5 ]; then
    echo "usage: install_private.sh STAGE_DIR DEST OWNER GROUP MODE" >&2
    exit 2
fi
stage=$1
dest=$2
owner=$3
group=$4
mode=$5
new="$dest.spark-cluster-new"

umask 077
rc=0
rm -f "$new" &&
    cp "$stage/upload" "$new" &&
    chown "$owner:$group" "$new" &&
    chmod "$mode" "$new" &&
    mv -f "$new" "$dest" || rc=$?
if [ "$rc" -ne 0 ]; then
    rm -f "$new"
fi
rm -rf "$stage"
exit "$rc"
