#!/bin/sh
# Wait (bounded) for one of our links (bond0, or one rail: a PCIe half of a
# QSFP port) to be up with its address and for every peer to answer over it
# on that link's subnet, then prove full-MTU frames pass end to end.
#
#   link_up_wait.sh LINK ADDRESS MTU TIMEOUT [PEER...]
#
# ADDRESS is address/prefix, as `ip -o -4 address` prints it. TIMEOUT bounds
# each wait, in seconds. SYSFS_ROOT (default /sys) is where the link's
# operstate is read: tests point it at a temporary tree.
# Exit 1 with one line on stderr saying what did not come up; 0 when all did.
# The network role sends this file's text with `sh -c` (nothing is installed).

if [ "$#" -lt 4 ]; then
    echo "usage: link_up_wait.sh LINK ADDRESS MTU TIMEOUT [PEER...]" >&2
    exit 2
fi
link=$1
address=$2
mtu=$3
timeout=$4
shift 4
sysfs=${SYSFS_ROOT:-/sys}
deadline=$(( $(date +%s) + timeout ))

# wait_for MESSAGE COMMAND...: retry COMMAND each second until it succeeds;
# past the deadline print MESSAGE and fail.
wait_for() {
    message=$1
    shift
    until "$@" >/dev/null 2>&1; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            echo "$message" >&2
            exit 1
        fi
        sleep 1
    done
}

# The trailing space ends the match at the prefix length: /2 is not /24.
has_address() {
    ip -o -4 address show dev "$link" | grep -qF "inet $address "
}

wait_for "$link is not up after ${timeout}s (cable? peer?)" grep -qx up "$sysfs/class/net/$link/operstate"
wait_for "$link has no address $address after ${timeout}s" has_address
payload=$(( mtu - 28 ))  # IPv4 + ICMP headers
for peer in "$@"; do
    wait_for "peer $peer does not answer ping over $link after ${timeout}s" ping -c1 -W1 -I "$link" "$peer"
    if ! ping -c1 -W2 -M "do" -s "$payload" -I "$link" "$peer" >/dev/null 2>&1; then
        echo "MTU $mtu does not pass to peer $peer over $link (peer or switch MTU?)" >&2
        exit 1
    fi
done
