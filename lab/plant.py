"""`python -m lab plant-nvidia NODE`: a node set up the way NVIDIA's playbook leaves it.

A user who followed NVIDIA's "connect two Sparks" playbook has /etc/netplan/40-cx7.yaml
(mode 600, no renderer key: netplan's default, networkd) with a static address on both
PCIe halves of the cabled port (port 1), one subnet per half, and often NetworkManager
profiles for the same netdevs with the same addresses. The deploy must find and not fight
them; this plants both on a running lab node. The contents are pure functions (unit-tested).
"""

from __future__ import annotations

import base64
import shlex
import subprocess
import uuid

from . import ssh, state
from .errors import LabError

NETPLAN_PATH = "/etc/netplan/40-cx7.yaml"
NM_DIR = "/etc/NetworkManager/system-connections"
# The cabled port's two halves and their subnets, as in the playbook.
PLAYBOOK_SUBNETS = (("enp1s0f1np1", "192.168.100"), ("enP2p1s0f1np1", "192.168.101"))


def addresses(index: int) -> dict[str, str]:
    """netdev -> address/prefix of node `index` (the playbook's .10 and .11 for nodes 1 and 2)."""
    return {netdev: f"{subnet}.{9 + index}/24" for netdev, subnet in PLAYBOOK_SUBNETS}


def netplan_text(index: int) -> str:
    lines = ["network:", "  version: 2", "  ethernets:"]
    for netdev, address in addresses(index).items():
        lines += [f"    {netdev}:", f"      addresses: [{address}]", "      dhcp4: no"]
    return "\n".join(lines) + "\n"


def profile_id(netdev: str) -> str:
    return f"cx7 {netdev}"


def profile_path(netdev: str) -> str:
    return f"{NM_DIR}/{profile_id(netdev)}.nmconnection"


def profile_text(index: int, netdev: str) -> str:
    # A fixed uuid per node and netdev keeps a second run byte-identical (idempotent).
    fixed = uuid.uuid5(uuid.NAMESPACE_URL, f"spark-lab:{state.node_name(index)}:{netdev}")
    return (
        "[connection]\n"
        f"id={profile_id(netdev)}\n"
        f"uuid={fixed}\n"
        "type=ethernet\n"
        f"interface-name={netdev}\n"
        "\n"
        "[ethernet]\n"
        "\n"
        "[ipv4]\n"
        f"address1={addresses(index)[netdev]}\n"
        "method=manual\n"
        "\n"
        "[ipv6]\n"
        "addr-gen-mode=default\n"
        "method=auto\n"
    )


def planted_files(index: int) -> dict[str, str]:
    """path -> content of every file planted on node `index` (each root-owned, mode 600)."""
    files = {NETPLAN_PATH: netplan_text(index)}
    for netdev, _ in PLAYBOOK_SUBNETS:
        files[profile_path(netdev)] = profile_text(index, netdev)
    return files


def plant_script(index: int) -> str:
    """The root shell script that writes the files and applies them as the user would have."""
    lines = ["set -eu", "umask 077", f"mkdir -p {shlex.quote(NM_DIR)}"]
    for path, text in planted_files(index).items():
        encoded = base64.b64encode(text.encode()).decode()
        lines.append(f"echo {encoded} | base64 -d > {shlex.quote(path)}")
        lines.append(f"chown root:root {shlex.quote(path)} && chmod 600 {shlex.quote(path)}")
    lines.append("nmcli connection reload")
    for netdev, _ in PLAYBOOK_SUBNETS:
        # NetworkManager cannot bring a profile up on a device netplan's networkd file makes
        # unmanaged: that is the state such a node is in, so a failure here is reported, not fatal.
        name = shlex.quote(profile_id(netdev))
        lines.append(f"nmcli connection up id {name} >/dev/null 2>&1 "
                     f"|| echo \"nmcli connection up {profile_id(netdev)}: not activated\"")
    lines.append("netplan apply")
    lines.append("ip -br -4 address show | grep -E 'enp1s0f1np1|enP2p1s0f1np1' || true")
    lines.append("nmcli -t -f DEVICE,STATE,CONNECTION device | grep -E '^en' || true")
    return "\n".join(lines) + "\n"


def plant_nvidia(name: str, log=print) -> dict[str, str]:
    index = state.node_index(name)
    files = planted_files(index)
    script = base64.b64encode(plant_script(index).encode()).decode()
    remote = (f"echo {shlex.quote(state.ADMIN_PASSWORD)} | sudo -S -p '' "
              f"sh -c \"$(echo {script} | base64 -d)\"")
    result = subprocess.run(ssh.ssh_argv(index, [remote]), stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise LabError(f"{name}: planting NVIDIA's playbook configuration failed "
                       f"(exit {result.returncode}): {result.stderr.strip()[-500:]}")
    for path, text in files.items():
        log(f"--- {name}:{path} (root, mode 600)")
        log(text.rstrip("\n"))
    log(f"--- {name}: applied (nmcli connection reload/up, netplan apply)")
    if result.stdout.strip():
        log(result.stdout.rstrip("\n"))
    return files
