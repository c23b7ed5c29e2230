"""The node's QSFP fabric, derived once from the inventory and group_data (pure).

Every role and the verify suite see the fabric through `fabric(host_data)`:
- its *rails*: one per PCIe half of each cabled QSFP port (netdev, RDMA
  device, and in dual_subnet mode the half's own address);
- its *control* interface and address: what VLLM_HOST_IP, the head address,
  the NCCL/GLOO/TP socket interfaces and node-to-node SSH use;
- what the RoCE detector is pointed at, and which address each peer answers on
  over which link.
Only the network role (roles/network) acts on `mode`; everything else reads
these derived values and never asks which mode is on.

Why two modes: on a DGX Spark one QSFP port is two PCIe Gen5 x4 halves, each
its own netdev and RDMA device on the same cable, each good for ~100-112 Gb/s.
"dual_subnet" (NVIDIA's playbook layout, the default) addresses each half on a
subnet of its own and hands NCCL both HCAs: the cable's full 200 Gb/s. "bond"
(the field reports' bond0) joins the halves into one netdev with one address:
TCP flows spread over it, while NCCL gets the bond's RDMA device(s).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Mapping

from .schema import DEFAULTS
from .settings import SettingError, require

# Each physical QSFP port's two PCIe halves (netdev, RDMA device), as DGX OS
# names them. NVIDIA's playbooks treat the PCI function as the port and the PCI
# domain as the half; one public note says the reverse, so preflight checks
# these names against the carriers the hardware reports.
PORT_HALVES: dict[int, tuple[tuple[str, str], tuple[str, str]]] = {
    0: (("enp1s0f0np0", "rocep1s0f0"), ("enP2p1s0f0np0", "roceP2p1s0f0")),
    1: (("enp1s0f1np1", "rocep1s0f1"), ("enP2p1s0f1np1", "roceP2p1s0f1")),
}
QSFP_NETDEVS = tuple(netdev for halves in PORT_HALVES.values() for netdev, _ in halves)
MODES = ("dual_subnet", "bond")

# Linux interface names: at most 15 bytes, no '/', no whitespace.
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")


@dataclass(frozen=True)
class Rail:
    port: int
    half: int
    netdev: str
    rdma_device: str
    # Address/prefix on this half's own subnet (dual_subnet); None when a bond
    # holds the node's one address.
    address: str | None = None

    @property
    def ip(self) -> str | None:
        return str(ipaddress.IPv4Interface(self.address).ip) if self.address else None


@dataclass(frozen=True)
class Link:
    """A netdev that carries an address of ours, and the peers' addresses on it."""

    netdev: str
    address: str
    peer_ips: tuple[str, ...]

    @property
    def ip(self) -> str:
        return str(ipaddress.IPv4Interface(self.address).ip)


@dataclass(frozen=True)
class Fabric:
    mode: str
    rails: tuple[Rail, ...]
    control_interface: str
    control_address: str
    links: tuple[Link, ...]
    bond_name: str | None = None

    @property
    def control_ip(self) -> str:
        return str(ipaddress.IPv4Interface(self.control_address).ip)

    @property
    def netdevs(self) -> list[str]:
        return [rail.netdev for rail in self.rails]

    @property
    def rdma_devices(self) -> list[str]:
        return [rail.rdma_device for rail in self.rails]

    def detector_args(self) -> list[str]:
        """Where roles/rdma/files/roce_detect.py looks for the HCAs and GIDs."""
        if self.mode == "bond":
            return ["--netdev", self.bond_name or "", "--slaves", ",".join(self.netdevs), "--ip", self.control_ip]
        return ["--rails", ",".join(f"{link.netdev}={link.ip}" for link in self.links)]


def _setting(host_data: Any, key: str) -> Any:
    value = host_data.get(key)
    return DEFAULTS[key] if value is None else value


def _ports(value: Any) -> list[int]:
    require(isinstance(value, (list, tuple)) and len(value) > 0, "qsfp_ports",
            f"must list the cabled QSFP port(s), e.g. [1] or [0, 1]; got {value!r}")
    for port in value:
        require(port in PORT_HALVES and not isinstance(port, bool), "qsfp_ports",
                f"holds {port!r}; a DGX Spark's QSFP ports are {sorted(PORT_HALVES)}")
    require(len(set(value)) == len(value), "qsfp_ports", f"lists a port twice: {value!r}")
    return list(value)


def _subnets(value: Any, count: int) -> list[ipaddress.IPv4Network]:
    require(isinstance(value, (list, tuple)) and len(value) >= count, "qsfp_subnets",
            f"needs one IPv4 subnet per rail ({count} for the cabled ports), got {value!r}")
    networks = []
    for raw in list(value)[:count]:
        try:
            networks.append(ipaddress.IPv4Network(str(raw)))
        except ValueError:
            raise SettingError(f"group_data: 'qsfp_subnets' holds {raw!r}, which is not an IPv4 subnet "
                               "like '192.168.100.0/24'") from None
    for index, network in enumerate(networks):
        for other in networks[:index]:
            require(not network.overlaps(other), "qsfp_subnets",
                    f"{network} overlaps {other}: every rail needs a subnet of its own")
    return networks


def _rail_address(node_address: ipaddress.IPv4Interface, first: ipaddress.IPv4Network,
                  subnet: ipaddress.IPv4Network) -> str:
    offset = int(node_address.ip) - int(first.network_address)
    ip = ipaddress.IPv4Address(int(subnet.network_address) + offset)
    require(ip in subnet and ip not in (subnet.network_address, subnet.broadcast_address), "qsfp_subnets",
            f"{subnet} has no host number {offset} for this node's qsfp_address {node_address}")
    return f"{ip}/{subnet.prefixlen}"


def _management_outside(host_data: Any, networks: list[ipaddress.IPv4Network]) -> None:
    # A rail's connected route would swallow the management address and cut
    # the deploy's own SSH session. DNS names are not looked up here.
    try:
        management = ipaddress.ip_address(str(host_data.get("ssh_hostname")))
    except ValueError:
        return
    for network in networks:
        require(management not in network, "qsfp_subnets",
                f"{network} holds this node's management address {management}: the QSFP route would cut "
                "the deploy's SSH session; give the rails subnets of their own")


def _node_address(host_data: Any) -> ipaddress.IPv4Interface:
    ip, prefix = host_data.get("qsfp_ip"), host_data.get("qsfp_prefixlen")
    if not ip or not prefix:
        raise SettingError("inventory: this host has no derived qsfp_ip/qsfp_prefixlen (define it with define_cluster)")
    return ipaddress.IPv4Interface(f"{ip}/{prefix}")


def _peer_ips(host_data: Any) -> list[ipaddress.IPv4Address]:
    return [ipaddress.IPv4Address(peer["qsfp_ip"]) for peer in host_data.get("peers") or []]


def fabric(host_data: Any) -> Fabric:
    """This node's fabric; a SettingError (one line) before anything changes."""
    mode = _setting(host_data, "network_mode")
    require(mode in MODES, "network_mode", f"must be one of {', '.join(MODES)}; got {mode!r}")
    bond_name = _setting(host_data, "bond_name")
    ports = _ports(_setting(host_data, "qsfp_ports"))
    halves = [(port, half, *PORT_HALVES[port][half]) for port in ports for half in (0, 1)]
    node = _node_address(host_data)
    peers = _peer_ips(host_data)

    if mode == "bond":
        require(isinstance(bond_name, str) and bool(_IFNAME.match(bond_name)) and bond_name not in QSFP_NETDEVS,
                "bond_name", f"must be an interface name other than the QSFP ports', got {bond_name!r}")
        rails = tuple(Rail(port, half, netdev, device) for port, half, netdev, device in halves)
        link = Link(bond_name, str(node.with_prefixlen), tuple(str(ip) for ip in peers))
        return Fabric(mode, rails, bond_name, str(node.with_prefixlen), (link,), bond_name)

    networks = _subnets(_setting(host_data, "qsfp_subnets"), len(halves))
    require(node.ip in networks[0] and node.network.prefixlen == networks[0].prefixlen, "qsfp_subnets",
            f"the first rail's subnet {networks[0]} must hold every node's qsfp_address (this node: {node}); "
            "write qsfp_address in it, or put its subnet first")
    _management_outside(host_data, networks)
    first = networks[0]
    rails = tuple(
        Rail(port, half, netdev, device, _rail_address(node, first, networks[index]))
        for index, (port, half, netdev, device) in enumerate(halves)
    )
    links = tuple(
        Link(rail.netdev, rail.address or "",
             tuple(_rail_address(ipaddress.IPv4Interface(f"{ip}/{first.prefixlen}"), first, networks[index])
                   .split("/")[0] for ip in peers))
        for index, rail in enumerate(rails)
    )
    return Fabric(mode, rails, rails[0].netdev, rails[0].address or "", links)

