#!/bin/sh
# Hand the QSFP netdevs of our netplan file from NetworkManager to
# systemd-networkd now, not at the next boot.
#
#   nm_release.sh NETDEV...
#
# Why: `netplan apply` marks a networkd-rendered port unmanaged for NM only
# through a udev property NM reads when the device appears, so a running NM
# keeps the port, and its default DHCP profile, failing, flushes the address
# networkd set within a minute (seen on the lab's NM 1.52; a reboot or this
# script ends it). `nmcli device set X managed no` releases the port at once
# and survives NM restarts; NM flushes the address as it lets go, so networkd
# is asked to configure the port again. Without NetworkManager: nothing to do.
# Exit 1 with one line on stderr when a port cannot be released.

if [ "$#" -lt 1 ]; then
    echo "usage: nm_release.sh NETDEV..." >&2
    exit 2
fi
command -v nmcli >/dev/null 2>&1 || exit 0
systemctl is-active --quiet NetworkManager || exit 0

for dev in "$@"; do
    # "10 (unmanaged)", "100 (connected)"; empty when NM does not know the device.
    state=$(nmcli -g GENERAL.STATE device show "$dev" 2>/dev/null)
    case "$state" in
        "" | *unmanaged*) continue ;;
    esac
    if ! nmcli device set "$dev" managed no >/dev/null 2>&1; then
        echo "NetworkManager does not let go of $dev (nmcli device set $dev managed no failed)" >&2
        exit 1
    fi
    if ! networkctl reconfigure "$dev" >/dev/null 2>&1; then
        echo "systemd-networkd could not configure $dev again (networkctl reconfigure $dev)" >&2
        exit 1
    fi
done
