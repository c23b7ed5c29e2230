"""The qemu command line of one lab node (pure: unit-tested without starting anything)."""

from __future__ import annotations

from pathlib import Path

from . import accel as accel_mod
from . import cx7, state, topology
from .image import Image

MEMORY_MIB = 1536
QSFP_MTU = 9000
# PCI slots fix the NIC names: the .link files in the image match these paths
# (the QSFP netdevs' slots are in cx7.LANES: 0x4-0x7).
MGMT_SLOT = 0x3
DISK_SLOT = 0x8
RNG_SLOT = 0x9


def node_files(name: str, directory: Path | None = None) -> dict[str, Path]:
    base = directory or state.state_dir()
    return {
        "overlay": base / f"{name}.qcow2",
        "pid": base / f"{name}.pid",
        "console": base / f"{name}.console.log",
        "qmp": base / f"{name}.qmp",
    }


def mac(index: int, nic: int) -> str:
    """nic 0 is the management NIC, nic 1 + L the QSFP netdev of lane L.

    Fixed per node and NIC: qemu's default would give every VM the same MACs.
    """
    return f"52:54:00:5a:{index:02x}:{nic:02x}"


def qemu_argv(index: int, count: int, image: Image, binary: str = "qemu-system-x86_64",
              directory: Path | None = None, accel: str = accel_mod.TCG) -> list[str]:
    name = state.node_name(index)
    files = node_files(name, directory)
    argv = [
        binary,
        "-name", f"{name},process=spark-lab-{name}",
        *accel_mod.qemu_options(accel),
        "-machine", "pc", "-nodefaults", "-vga", "none", "-display", "none",
        "-smp", "1", "-m", str(MEMORY_MIB),
        "-kernel", str(image.kernel), "-initrd", str(image.initrd),
        "-append", f"root=/dev/vda rw console=ttyS0 systemd.hostname={name}",
        "-chardev", f"file,id=console,path={files['console']},append=on",
        "-serial", "chardev:console",
        "-qmp", f"unix:{files['qmp']},server=on,wait=off",
        "-pidfile", str(files["pid"]),
        # Paused until nodes.start has pulled the uncabled ports' links over QMP: the
        # guest never sees carrier on a port with no cable, not even for a moment.
        "-S",
        "-drive", f"file={files['overlay']},if=none,id=disk,format=qcow2",
        "-device", f"virtio-blk-pci,drive=disk,addr={DISK_SLOT:#x}",
        "-device", f"virtio-rng-pci,addr={RNG_SLOT:#x}",
        "-netdev",
        f"user,id=mgmt,restrict=on,hostfwd=tcp:{state.SSH_HOST}:{state.ssh_port(index)}-:22",
        "-device", f"virtio-net-pci,netdev=mgmt,addr={MGMT_SLOT:#x},mac={mac(index, 0)}",
    ]
    for lane, spec in enumerate(cx7.LANES):
        local, remote = topology.qsfp_endpoints(index, lane, count)
        netdev = cx7.netdev_id(lane)
        argv += [
            "-netdev", f"socket,id={netdev},udp={remote},localaddr={local}",
            "-device",
            f"virtio-net-pci,id={netdev}-nic,netdev={netdev},addr={spec.slot:#x},"
            f"mac={mac(index, lane + 1)},host_mtu={QSFP_MTU}",
        ]
    return argv
