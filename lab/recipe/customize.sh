#!/bin/sh
# Turns a minbase trixie tree into a fresh-looking DGX Spark.
# Run by mmdebstrap as a customize hook: $1 = the tree, $2 = recipe files, $3 = lab public key.
set -eu
root=$1
files=$2
pubkey=$3

cp -a "$files/." "$root/"
chmod 0600 "$root/etc/netplan/01-lab-mgmt.yaml"
chmod 0755 "$root/usr/local/sbin/lab-rxe"

chroot "$root" useradd --create-home --shell /bin/bash --groups sudo spark
# sudo still asks for this password, as on DGX OS. SHA-512 instead of the
# default yescrypt: under TCG emulation yescrypt costs ~3 s per sudo, and
# pyinfra runs sudo -k for every operation (7x slower deploys in the lab).
echo 'spark:spark' | chroot "$root" chpasswd --crypt-method SHA512 --sha-rounds 5000
install -d -m 0700 "$root/home/spark/.ssh"
install -m 0600 "$pubkey" "$root/home/spark/.ssh/authorized_keys"
chroot "$root" chown -R spark:spark /home/spark/.ssh
chroot "$root" passwd --lock root

# NetworkManager owns the QSFP ports (its automatic "Wired connection N" DHCP profiles, as on
# DGX OS); systemd-networkd keeps the management NIC, which NetworkManager leaves alone
# (etc/NetworkManager/conf.d/10-lab-mgmt-unmanaged.conf).
chroot "$root" systemctl enable systemd-networkd systemd-resolved NetworkManager ssh docker \
    lab-ssh-hostkeys.service lab-rxe.service lab-rxe-follow.service lab-boot-log.service
# The initrd must carry the .link files so NICs get their Spark names from the first uevent.
chroot "$root" update-initramfs -u -k all
