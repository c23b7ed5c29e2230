"""The ConnectX-7 as the lab builds it (pure): four QSFP netdevs, two PCIe halves per port.

A Spark's CX-7 has two QSFP ports, and each port is two PCIe Gen5 x4 halves that share the
cable: half 0 in PCI domain 0000 (enp1s0f*), half 1 in domain 0002 (enP2p1s0f*), each its
own netdev and RDMA device. The lab gives each half its own virtio NIC; qemu's pc machine has
one PCI domain, so the Spark names come from the image's .link files, matched by the qemu
slot below (lab/recipe/files/etc/systemd/network/10-lab-*.link), never from the kernel.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Lane:
    """One PCIe half of one QSFP port: a netdev, its soft-RoCE device, its qemu slot."""

    port: int
    half: int
    netdev: str
    rdma: str
    slot: int


# In lab-rxe's PAIRS order (the order that picks which device follows a bond).
LANES = (
    Lane(0, 0, "enp1s0f0np0", "rocep1s0f0", 0x4),
    Lane(0, 1, "enP2p1s0f0np0", "roceP2p1s0f0", 0x5),
    Lane(1, 0, "enp1s0f1np1", "rocep1s0f1", 0x6),
    Lane(1, 1, "enP2p1s0f1np1", "roceP2p1s0f1", 0x7),
)

# Which QSFP ports have a cable in: the README's two-node setup is one cable in port 1.
CABLES = {"port1": (1,), "both": (0, 1)}
DEFAULT_CABLES = "port1"


def check_cables(cables: str) -> str:
    if cables not in CABLES:
        raise ValueError(f"cables must be one of {sorted(CABLES)}, got {cables!r}")
    return cables


def cabled(lane: int, cables: str) -> bool:
    """Whether lane `lane` (an index into LANES) has a cable in its port."""
    return LANES[lane].port in CABLES[check_cables(cables)]


def netdev_id(lane: int) -> str:
    """qemu's id of the lane's backend; QMP `set_link` takes it to pull the cable."""
    return f"qsfp{lane}"


def unplugged(cables: str) -> list[str]:
    """The qemu netdev ids whose link is set off after every start of a VM."""
    return [netdev_id(lane) for lane in range(len(LANES)) if not cabled(lane, cables)]
