"""Spark-shaped /sys trees for the RoCE detector's tests, and the one place
that loads the detector (roles/rdma/files/roce_detect.py is a shipped file,
not a package module: it is loaded from its path).

A DGX Spark's QSFP port is two PCIe halves, each its own netdev and RDMA
device (../shared/anchors.md, "The CX-7's two PCIe halves"):

    port 0: enp1s0f0np0 / rocep1s0f0   +  enP2p1s0f0np0 / roceP2p1s0f0
    port 1: enp1s0f1np1 / rocep1s0f1   +  enP2p1s0f1np1 / roceP2p1s0f1

Each device gets a GID table of 255 entries, as the kernel shows it: unset
entries read as the zero GID and have no gid_attrs/{types,ndevs}/<i> file (a
real node answers EINVAL there, which the detector reads as "nothing").
A ConnectX-7 fills an address into four entries (0 RoCE v1 link-local, 1 RoCE
v2 link-local, 2 RoCE v1 IPv4-mapped, 3 RoCE v2 IPv4-mapped); soft-RoCE into
two (0 RoCE v2 link-local, 1 RoCE v2 IPv4-mapped).
"""

from __future__ import annotations

import os
from pathlib import Path

from roles.rdma.facts import DETECTOR_SOURCE
from source_module import load_source


def load_detector(name="roce_detect"):
    return load_source(name, DETECTOR_SOURCE)


detector = load_detector()

PORT_HALVES = {
    0: (("enp1s0f0np0", "rocep1s0f0"), ("enP2p1s0f0np0", "roceP2p1s0f0")),
    1: (("enp1s0f1np1", "rocep1s0f1"), ("enP2p1s0f1np1", "roceP2p1s0f1")),
}
DEVICE_OF = {netdev: device for halves in PORT_HALVES.values() for netdev, device in halves}
GID_ENTRIES = 255
ZERO_GID = "0000:0000:0000:0000:0000:0000:0000:0000"
ROCE_V1 = "IB/RoCE v1"
ROCE_V2 = "RoCE v2"


def mapped(ip):
    """The sysfs text of the IPv4-mapped GID of an address (::ffff:a.b.c.d)."""
    a, b, c, d = (int(part) for part in ip.split("."))
    return "0000:0000:0000:0000:0000:ffff:%02x%02x:%02x%02x" % (a, b, c, d)


def link_local(device):
    """A fe80:: GID, distinct per device (from its name: MACs do not matter here)."""
    low = sum(device.encode()) & 0xFFFF
    return "fe80:0000:0000:0000:4ebb:47ff:fe00:%04x" % low


class SparkSysfs:
    """Builds one node's /sys under `root` (pass str(tree.root) as --sysfs)."""

    def __init__(self, root):
        self.root = Path(root)

    def __str__(self):
        return str(self.root)

    # --- netdevs ------------------------------------------------------------

    def net(self, netdev):
        return self.root / "class" / "net" / netdev

    def netdev(self, netdev, carrier=1, mtu=9000):
        """A netdev; carrier 1 is a cable with link, 0 none, None leaves the file out."""
        base = self.net(netdev)
        base.mkdir(parents=True, exist_ok=True)
        (base / "operstate").write_text("up\n" if carrier != 0 else "down\n")
        (base / "mtu").write_text("%d\n" % mtu)
        if carrier is None:
            if (base / "carrier").exists():
                (base / "carrier").unlink()
        else:
            (base / "carrier").write_text("%d\n" % carrier)
        return base

    def bond(self, name, slaves, lower_links=False):
        """A bond over `slaves`: bonding/slaves, or only lower_<slave> links
        (how a team or a bond reads where bonding/ is not shown)."""
        base = self.netdev(name)
        if lower_links:
            for slave in slaves:
                os.symlink("../" + slave, str(base / ("lower_" + slave)))
        else:
            (base / "bonding").mkdir(exist_ok=True)
            (base / "bonding" / "slaves").write_text(" ".join(slaves) + "\n")
            (base / "bonding" / "mode").write_text("balance-xor 2\n")
        for slave in slaves:
            if not self.net(slave).exists():
                self.netdev(slave)
        return base

    def set_carrier(self, netdev, carrier):
        self.netdev(netdev, carrier=carrier)

    # --- RDMA devices -------------------------------------------------------

    def ib(self, device):
        return self.root / "class" / "infiniband" / device

    def port_dir(self, device, port=1):
        return self.ib(device) / "ports" / str(port)

    def _device(self, device, state, ports=(1,)):
        for port in ports:
            base = self.port_dir(device, port)
            (base / "gids").mkdir(parents=True, exist_ok=True)
            (base / "gid_attrs" / "types").mkdir(parents=True, exist_ok=True)
            (base / "gid_attrs" / "ndevs").mkdir(parents=True, exist_ok=True)
            (base / "state").write_text(state + "\n")
            (base / "phys_state").write_text("5: LinkUp\n" if "ACTIVE" in state else "3: Disabled\n")
            (base / "link_layer").write_text("Ethernet\n")
            for index in range(GID_ENTRIES):
                (base / "gids" / str(index)).write_text(ZERO_GID + "\n")
        return self.ib(device)

    def mlx5(self, device, netdev, state="4: ACTIVE", symlink=False):
        """A ConnectX-7 PCIe function: device/net/<netdev> names its netdev,
        as a directory, or as a symlink into /sys/class/net like a real node."""
        base = self._device(device, state)
        net = base / "device" / "net"
        net.mkdir(parents=True, exist_ok=True)
        if symlink:
            os.symlink(os.path.relpath(str(self.net(netdev)), str(net)), str(net / netdev))
        else:
            (net / netdev).mkdir(exist_ok=True)
            (net / netdev / "ifindex").write_text("0\n")
        return base

    def rxe(self, device, parent, state="4: ACTIVE"):
        """A soft-RoCE device: `parent` names its netdev."""
        base = self._device(device, state)
        (base / "parent").write_text(parent + "\n")
        return base

    def set_state(self, device, state, port=1):
        (self.port_dir(device, port) / "state").write_text(state + "\n")

    # --- GID tables ---------------------------------------------------------

    def set_gid(self, device, index, gid, gid_type=ROCE_V2, owner=None, port=1):
        base = self.port_dir(device, port)
        (base / "gids" / str(index)).write_text(gid + "\n")
        (base / "gid_attrs" / "types" / str(index)).write_text(gid_type + "\n")
        if owner is not None:
            (base / "gid_attrs" / "ndevs" / str(index)).write_text(owner + "\n")

    def clear_gid(self, device, index, port=1):
        """The entry goes unset: zero GID, no gid_attrs (EINVAL on a node)."""
        base = self.port_dir(device, port)
        (base / "gids" / str(index)).write_text(ZERO_GID + "\n")
        for attribute in ("types", "ndevs"):
            path = base / "gid_attrs" / attribute / str(index)
            if path.exists():
                path.unlink()

    def move_gid(self, device, old_index, new_index, port=1):
        """An address's GID moves in the table (after a re-apply, say)."""
        base = self.port_dir(device, port)
        gid = (base / "gids" / str(old_index)).read_text().strip()
        gid_type = (base / "gid_attrs" / "types" / str(old_index)).read_text().strip()
        owner_file = base / "gid_attrs" / "ndevs" / str(old_index)
        owner = owner_file.read_text().strip() if owner_file.exists() else None
        self.clear_gid(device, old_index, port)
        self.set_gid(device, new_index, gid, gid_type, owner, port)

    def cx7_gids(self, device, owner, ip=None):
        """A ConnectX-7's table for one netdev: link-local at 0 (v1) and 1
        (v2); with an address, its mapped GID at 2 (v1) and 3 (v2)."""
        self.set_gid(device, 0, link_local(device), ROCE_V1, owner)
        self.set_gid(device, 1, link_local(device), ROCE_V2, owner)
        if ip:
            self.set_gid(device, 2, mapped(ip), ROCE_V1, owner)
            self.set_gid(device, 3, mapped(ip), ROCE_V2, owner)

    def rxe_gids(self, device, owner, ip=None):
        """Soft-RoCE's table: link-local at 0, the address at 1 (both RoCE v2)."""
        self.set_gid(device, 0, link_local(device), ROCE_V2, owner)
        if ip:
            self.set_gid(device, 1, mapped(ip), ROCE_V2, owner)


def spark(root, addresses=None, cabled=(1,), symlink=False):
    """A DGX Spark's four QSFP halves with mlx5 devices. Halves of a cabled
    port have link (carrier 1, port ACTIVE); the others none (carrier 0,
    DOWN). `addresses` maps a netdev to its IPv4 (dual_subnet rails)."""
    tree = SparkSysfs(root)
    addresses = addresses or {}
    for port, halves in PORT_HALVES.items():
        for netdev, device in halves:
            up = port in cabled
            tree.netdev(netdev, carrier=1 if up else 0)
            tree.mlx5(device, netdev, "4: ACTIVE" if up else "1: DOWN", symlink=symlink)
            tree.cx7_gids(device, netdev, addresses.get(netdev))
    return tree


def spark_bond(root, ip="10.0.0.1", slaves=("enp1s0f1np1", "enP2p1s0f1np1"), bond="bond0"):
    """A Spark with `bond` over `slaves` (both halves of port 1 by default):
    the slaves' mlx5 devices carry the bond's GIDs (ndev bond0), as a CX-7
    does for a bond that is not RoCE LAG."""
    tree = spark(root, cabled=sorted(set(port for port, halves in PORT_HALVES.items()
                                          for netdev, _ in halves if netdev in slaves)))
    tree.bond(bond, list(slaves))
    for slave in slaves:
        device = DEVICE_OF[slave]
        for index in range(4):
            tree.clear_gid(device, index)
        tree.cx7_gids(device, bond, ip)
    return tree


def lab_rxe_bond(root, ip="10.0.0.1", slaves=("enp1s0f1np1", "enP2p1s0f1np1"), bond="bond0"):
    """The lab: one soft-RoCE device per QSFP netdev, and the first slave's
    moved onto the bond (lab-rxe follow: an rxe on a slave sends but never
    receives). Every slave's rxe still shows the bond's GIDs."""
    tree = SparkSysfs(root)
    for netdev, device in DEVICE_OF.items():
        tree.netdev(netdev)
        tree.rxe(device, netdev)
        tree.rxe_gids(device, netdev)
    tree.bond(bond, list(slaves))
    (tree.ib(DEVICE_OF[slaves[0]]) / "parent").write_text(bond + "\n")
    for slave in slaves:
        tree.rxe_gids(DEVICE_OF[slave], bond, ip)
    return tree


def lab_rxe_rails(root, addresses):
    """The lab in dual_subnet mode: one soft-RoCE device on each QSFP netdev."""
    tree = SparkSysfs(root)
    for netdev, device in DEVICE_OF.items():
        tree.netdev(netdev)
        tree.rxe(device, netdev)
        tree.rxe_gids(device, netdev, addresses.get(netdev))
    return tree
