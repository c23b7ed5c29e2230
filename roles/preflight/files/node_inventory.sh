#!/bin/sh
# What a node is made of, one key=value line each (a value may hold spaces):
# kernel, NVIDIA driver (/proc banner and nvidia-smi), the engine image's id
# and NCCL version, the admin USER's account and who owns its home, free disk
# under that home, and for each QSFP netdev named: its carrier and the RDMA
# device sitting on it.
#
#   admin=missing                       no such account
#   admin_home=HOME OWNER|missing       its home directory and that directory's owner
#
#   node_inventory.sh USER IMAGE [NETDEV...]
#
#   carrier.NETDEV=1|0|unknown|absent   unknown: administratively down
#                                       (the kernel refuses to read carrier)
#   rdma.NETDEV=DEVICE|none             the RDMA device on that netdev
#
# Preflight passes all four QSFP netdevs (both PCIe halves of both ports), not
# only the rails group_data names, so that a cable in the other port shows.
# IMAGE "" asks nothing of docker. What cannot be read is left out or empty,
# never an error: roles/preflight/facts.py reads it as unknown.
# SYSFS_ROOT and PROC_ROOT (default /sys and /proc) are where carriers, RDMA
# devices and the driver's banner are read: tests point them at temporary trees.
# The preflight role sends this file's text with `sh -c` (nothing is installed).

if [ "$#" -lt 2 ]; then
    echo "usage: node_inventory.sh USER IMAGE [NETDEV...]" >&2
    exit 2
fi
user=$1
image=$2
shift 2
sysfs=${SYSFS_ROOT:-/sys}
proc=${PROC_ROOT:-/proc}

# The RDMA device whose netdev is $1: a ConnectX (mlx5) device lists its PCI
# function's netdev under device/net/; a soft-RoCE (rxe) device names its
# netdev in `parent`. Prints nothing when none does.
rdma_on() {
    for dev in "$sysfs"/class/infiniband/*; do
        [ -e "$dev" ] || continue
        if [ -e "$dev/device/net/$1" ]; then
            echo "${dev##*/}"
            return
        fi
        parent=
        [ -r "$dev/parent" ] && read -r parent < "$dev/parent"
        if [ "$parent" = "$1" ]; then
            echo "${dev##*/}"
            return
        fi
    done
}

echo "kernel=$(uname -r)"
if [ -r "$proc/driver/nvidia/version" ]; then
    echo "driver_proc=$(head -n1 "$proc/driver/nvidia/version")"
fi
if command -v nvidia-smi >/dev/null 2>&1; then
    echo "driver_smi=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n1)"
fi
# NGC-based engine images (vLLM, SGLang) declare their NCCL in the image's
# environment. One docker call for both (each costs a docker CLI start): the
# id, then one line per variable.
if [ -n "$image" ] && command -v docker >/dev/null 2>&1; then
    docker image inspect --format 'image_id={{.Id}}{{range .Config.Env}}{{println}}env.{{.}}{{end}}' "$image" 2>/dev/null \
        | sed -n -e '/^image_id=/p' -e 's/^env\.NCCL_VERSION=/nccl=/p'
fi
for name in "$@"; do
    d=$sysfs/class/net/$name
    if [ ! -e "$d" ]; then
        echo "carrier.$name=absent"
        echo "rdma.$name=none"
        continue
    fi
    echo "carrier.$name=$(cat "$d/carrier" 2>/dev/null || echo unknown)"
    device=$(rdma_on "$name")
    # A soft-RoCE device follows its port into a bond (the lab's lab-rxe does,
    # as a ConnectX keeps RDMA under a bond): then it sits on the bond.
    if [ -z "$device" ] && [ -L "$d/master" ]; then
        master=$(readlink "$d/master")
        device=$(rdma_on "${master##*/}")
    fi
    echo "rdma.$name=${device:-none}"
done
# The admin account the roles write as: it must exist and own its home (the
# model cache lives there). Checked here, before the gpu role can reboot.
entry=$(getent passwd "$user")
home=$(printf '%s\n' "$entry" | cut -d: -f6)
if [ -z "$entry" ]; then
    echo "admin=missing"
elif [ -d "$home" ]; then
    echo "admin_home=$home $(stat -c %U "$home" 2>/dev/null)"
else
    echo "admin_home=$home missing"
fi
[ -d "$home" ] || home=/
echo "disk_path=$home"
echo "disk_avail_kib=$(df -Pk "$home" 2>/dev/null | awk 'NR==2 {print $4}')"
exit 0
