#!/bin/sh
# Give the QSFP ports back once spark-cluster's netplan, sysctl and
# NetworkManager files are gone (and the owner's own configuration is back).
#
#   qsfp_release.sh [bond=NAME]... [address=NETDEV:ADDRESS/PREFIX]... [port=NETDEV]...
#
# 1. Our bonds are deleted and our addresses taken off: networkd forgets a
#    link whose file is gone, it does not unconfigure it.
# 2. netplan renders and applies what is left (generate first: it validates).
# 3. A running NetworkManager re-reads its conf.d (our unmanaged-devices line
#    is gone) and takes back each port that netplan does not now give to
#    networkd (the deploy told it to let go: nm_release.sh).
# 4. ARP settings back to the kernel's defaults, then whatever the remaining
#    sysctl files say.
# Exit 1 with one line on stderr when netplan cannot apply.
# ROOT (default empty) prefixes the sysfs and /run paths read (tests).
# The network role sends this file's text with `sh -c` (nothing is installed).

root=${ROOT:-}
bonds=""
addresses=""
ports=""
for arg in "$@"; do
    case $arg in
        bond=*) bonds="$bonds ${arg#bond=}" ;;
        address=*) addresses="$addresses ${arg#address=}" ;;
        port=*) ports="$ports ${arg#port=}" ;;
        *)
            echo "usage: qsfp_release.sh [bond=NAME]... [address=NETDEV:ADDRESS]... [port=NETDEV]..." >&2
            exit 2
            ;;
    esac
done

for bond in $bonds; do
    if [ -e "$root/sys/class/net/$bond/bonding" ]; then
        ip link delete "$bond" || exit 1
    fi
done
for pair in $addresses; do
    ip -4 address del "${pair#*:}" dev "${pair%%:*}" 2>/dev/null
done

if ! netplan generate; then
    echo "netplan generate failed once spark-cluster's file was gone: an owner's netplan file is invalid" >&2
    exit 1
fi
if ! netplan apply; then
    echo "netplan apply failed once spark-cluster's file was gone (see its output above)" >&2
    exit 1
fi

if command -v nmcli >/dev/null 2>&1 && systemctl is-active --quiet NetworkManager; then
    nmcli general reload conf >/dev/null 2>&1 || systemctl reload NetworkManager
    for port in $ports; do
        # netplan's networkd output for this port: it is networkd's, not NetworkManager's.
        if ls "$root"/run/systemd/network/*netplan-"$port".network >/dev/null 2>&1; then
            continue
        fi
        case $(nmcli -g GENERAL.STATE device show "$port" 2>/dev/null) in
            *unmanaged*) nmcli device set "$port" managed yes >/dev/null 2>&1 ;;
        esac
    done
fi

sysctl -q -w net.ipv4.conf.all.arp_ignore=0 net.ipv4.conf.all.arp_announce=0
sysctl -q --system
exit 0
