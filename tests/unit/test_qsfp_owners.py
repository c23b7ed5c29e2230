"""spark_cluster/qsfp_owners: finding other owners of the QSFP ports (the shipped
qsfp_owners.sh run for real against temporary trees), deciding (adopt, refuse,
take over) and moving them aside restorably (qsfp_takeover.sh, for real)."""

import base64
import os
import stat
import subprocess
from pathlib import Path

import pytest

from spark_cluster.qsfp_owners import (
    OWNERS, TAKEOVER, TAKEOVER_DIR, Claim, QsfpOwners, adoptable, netplan_addresses, parse_owners, refusal,
    takeover_command, unmovable,
)

QSFP = ["enp1s0f0np0", "enP2p1s0f0np0", "enp1s0f1np1", "enP2p1s0f1np1"]
OWN = "/etc/netplan/40-spark-cluster.yaml"
MACS = {"enp1s0f0np0": "4c:bb:47:00:00:01", "enP2p1s0f0np0": "4c:bb:47:00:00:02",
        "enp1s0f1np1": "4c:bb:47:00:00:03", "enP2p1s0f1np1": "4c:bb:47:00:00:04",
        "enP7s7": "4c:bb:47:00:00:99", "lo": "00:00:00:00:00:00"}

# What NVIDIA's "connect two Sparks" playbook has the owner write.
CX7 = """\
network:
  version: 2
  ethernets:
    enp1s0f1np1:
      addresses: [192.168.100.10/24]
      dhcp4: no
    enP2p1s0f1np1:
      addresses: [192.168.101.10/24]
      dhcp4: no
"""
CX7_EXPECTED = {"enp1s0f1np1": ["192.168.100.10/24"], "enP2p1s0f1np1": ["192.168.101.10/24"]}
NM_KEYFILE = """\
[connection]
id=cx7 port 0
uuid=0c6e7a3c-1111-2222-3333-444455556666
type=ethernet
interface-name=enP2p1s0f0np0

[ipv4]
method=manual
address1=192.168.102.10/24
"""
NETWORKD_GLOB = "[Match]\nName=enp1s0f*\n\n[Network]\nAddress=10.9.0.1/24\n"
# Unrelated: the management NIC, a generic profile bound to no device, netplan's own output.
CLOUD_INIT = "network:\n  version: 2\n  ethernets:\n    enP7s7:  # not enp1s0f0np0\n      dhcp4: true\n"
MGMT_NETWORK = "[Match]\nName=enP7s7\n\n[Network]\nDHCP=yes\n"
GENERIC_PROFILE = "[connection]\nid=Wired connection 1\ntype=ethernet\n"
NETPLAN_GENERATED = "[connection]\nid=netplan-enp1s0f0np0\ninterface-name=enp1s0f0np0\n"


def put(root: Path, path: str, text: str, mode: int = 0o600) -> Path:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    target.chmod(mode)
    return target


def node(root: Path, netdevs=tuple(MACS)) -> Path:
    """A fake node: sysfs netdevs with their MACs, our own netplan file."""
    for name in netdevs:
        put(root, f"/sys/class/net/{name}/address", MACS[name] + "\n", 0o644)
    put(root, OWN, "network:\n  ethernets:\n    enp1s0f1np1: {}\n    enP2p1s0f1np1: {}\n")
    return root


def owners(root: Path, *netdevs: str, own: str = OWN) -> list[Claim]:
    result = subprocess.run(["sh", str(OWNERS), own, *(netdevs or QSFP)], capture_output=True, text=True,
                            timeout=20, env={"PATH": os.environ["PATH"], "ROOT": str(root)})
    assert (result.returncode, result.stderr) == (0, "")
    return parse_owners(result.stdout.splitlines())


def by_path(claims):
    return {claim.path: claim for claim in claims}


# --- finding the owners (qsfp_owners.sh) ----------------------------------------

def test_nvidia_playbook_nm_and_networkd_owners_are_found_and_nothing_else(tmp_path):
    root = node(tmp_path)
    put(root, "/etc/netplan/40-cx7.yaml", CX7)
    put(root, "/etc/NetworkManager/system-connections/cx7 port 0.nmconnection", NM_KEYFILE)
    put(root, "/etc/systemd/network/10-qsfp.network", NETWORKD_GLOB, 0o644)
    put(root, "/etc/netplan/50-cloud-init.yaml", CLOUD_INIT)
    put(root, "/etc/systemd/network/20-mgmt.network", MGMT_NETWORK, 0o644)
    put(root, "/etc/NetworkManager/system-connections/Wired connection 1.nmconnection", GENERIC_PROFILE)
    put(root, "/run/NetworkManager/system-connections/netplan-enp1s0f0np0.nmconnection", NETPLAN_GENERATED)
    # NM's own default DHCP profile of a fresh DGX OS, bound to the port, in memory only
    put(root, "/run/NetworkManager/system-connections/Wired connection 4.nmconnection",
        "[connection]\nid=Wired connection 4\ntype=ethernet\ninterface-name=enp1s0f1np1\n[ipv4]\nmethod=auto\n")
    put(root, "/run/systemd/network/10-netplan-enp1s0f0np0.network", "[Match]\nName=enp1s0f0np0\n")
    put(root, "/etc/netplan/40-cx7.yaml.bak", CX7)  # netplan reads *.yaml only

    claims = by_path(owners(root))

    assert set(claims) == {"/etc/netplan/40-cx7.yaml",
                           "/etc/NetworkManager/system-connections/cx7 port 0.nmconnection",
                           "/etc/systemd/network/10-qsfp.network"}
    cx7 = claims["/etc/netplan/40-cx7.yaml"]
    assert (cx7.kind, cx7.netdevs, cx7.others, cx7.id) == ("netplan", ("enp1s0f1np1", "enP2p1s0f1np1"), (), None)
    assert cx7.content == CX7
    nm = claims["/etc/NetworkManager/system-connections/cx7 port 0.nmconnection"]
    assert (nm.kind, nm.netdevs, nm.id, nm.content) == ("networkmanager", ("enP2p1s0f0np0",), "cx7 port 0", None)
    networkd = claims["/etc/systemd/network/10-qsfp.network"]
    assert (networkd.kind, networkd.netdevs, networkd.others) == ("networkd", ("enp1s0f0np0", "enp1s0f1np1"), ())


def test_the_line_format_is_key_value_with_encoded_spaces(tmp_path):
    root = node(tmp_path)
    put(root, "/etc/netplan/40-cx7.yaml", CX7)
    put(root, "/etc/NetworkManager/system-connections/cx7 port 0.nmconnection", NM_KEYFILE)
    result = subprocess.run(["sh", str(OWNERS), OWN, *QSFP], capture_output=True, text=True, timeout=20,
                            env={"PATH": os.environ["PATH"], "ROOT": str(root)})
    lines = result.stdout.splitlines()
    assert lines == [
        "kind=netplan path=/etc/netplan/40-cx7.yaml netdevs=enp1s0f1np1,enP2p1s0f1np1 content="
        + base64.b64encode(CX7.encode()).decode(),
        "kind=networkmanager path=/etc/NetworkManager/system-connections/cx7%20port%200.nmconnection "
        "netdevs=enP2p1s0f0np0 id=cx7%20port%200",
    ]


def test_our_own_file_and_what_netplan_does_not_read_are_skipped(tmp_path):
    root = node(tmp_path)
    # our name in a lower directory is shadowed by our file; /lib is shadowed by /etc
    put(root, "/run/netplan/40-spark-cluster.yaml", CX7)
    put(root, "/etc/netplan/60-old.yaml", CX7)
    put(root, "/lib/netplan/60-old.yaml", CX7.replace("enp1s0f1np1", "enp1s0f0np0"))
    put(root, "/lib/netplan/70-lib.yaml", "network:\n  ethernets:\n    enp1s0f0np0: {}\n")
    put(root, "/run/netplan/70-lib.yaml", "network:\n  ethernets:\n    enP7s7: {}\n")
    claims = by_path(owners(root))
    assert set(claims) == {"/etc/netplan/60-old.yaml"}
    # another own file: ours is now someone else's; /run's copy is still shadowed by it
    assert set(by_path(owners(root, own="/etc/netplan/60-old.yaml"))) == {OWN}


def test_netplan_matches_bonds_and_vlans_claim_the_port(tmp_path):
    root = node(tmp_path)
    put(root, "/etc/netplan/90-NM-abc.yaml", """\
network:
  version: 2
  ethernets:
    NM-abc:
      renderer: NetworkManager
      match:
        name: "enP2p1s0f*"
      networkmanager:
        uuid: "abc"
""")
    put(root, "/etc/netplan/45-bond.yaml",
        "network:\n  bonds:\n    bond1:\n      interfaces: [enp1s0f0np0, 'enp1s0f1np1']\n")
    put(root, "/etc/netplan/46-bridge.yaml",
        "network:\n  bridges:\n    br0:\n      interfaces:\n        - enP2p1s0f1np1\n")
    put(root, "/etc/netplan/47-vlan.yaml", "network:\n  vlans:\n    v100:\n      id: 100\n      link: enP2p1s0f0np0\n")
    claims = by_path(owners(root))
    assert claims["/etc/netplan/90-NM-abc.yaml"].netdevs == ("enP2p1s0f0np0", "enP2p1s0f1np1")
    assert claims["/etc/netplan/45-bond.yaml"].netdevs == ("enp1s0f0np0", "enp1s0f1np1")
    assert claims["/etc/netplan/46-bridge.yaml"].netdevs == ("enP2p1s0f1np1",)
    assert claims["/etc/netplan/47-vlan.yaml"].netdevs == ("enP2p1s0f0np0",)


def test_a_glob_that_also_matches_the_management_nic_says_so(tmp_path):
    root = node(tmp_path)
    put(root, "/etc/systemd/network/99-en.network", "[Match]\nName=en*\n[Network]\nDHCP=yes\n")
    put(root, "/etc/systemd/network/98-all.network", "[Network]\nDHCP=yes\n")  # no [Match]: every netdev
    put(root, "/etc/systemd/network/97-not-mgmt.network", "[Match]\nName=!enP7s7\n")
    claims = by_path(owners(root))
    assert claims["/etc/systemd/network/99-en.network"].netdevs == tuple(QSFP)
    assert claims["/etc/systemd/network/99-en.network"].others == ("enP7s7",)
    assert claims["/etc/systemd/network/98-all.network"].others == ("enP7s7",)
    assert claims["/etc/systemd/network/97-not-mgmt.network"].netdevs == tuple(QSFP)
    assert claims["/etc/systemd/network/97-not-mgmt.network"].others == ()


def test_mac_bound_profiles_claim_the_netdev_with_that_mac(tmp_path):
    root = node(tmp_path)
    put(root, "/etc/systemd/network/10-mac.network", "[Match]\nMACAddress=4C:BB:47:00:00:03\n")
    put(root, "/etc/NetworkManager/system-connections/bymac.nmconnection",
        "[connection]\nid=bymac\n[ethernet]\nmac-address=4C:BB:47:00:00:02\n")
    # both conditions must hold: the name and the MAC disagree, no claim
    put(root, "/etc/NetworkManager/system-connections/mismatch.nmconnection",
        "[connection]\nid=x\ninterface-name=enp1s0f0np0\n[ethernet]\nmac-address=4C:BB:47:00:00:02\n")
    claims = by_path(owners(root))
    assert set(claims) == {"/etc/systemd/network/10-mac.network",
                           "/etc/NetworkManager/system-connections/bymac.nmconnection"}
    assert claims["/etc/systemd/network/10-mac.network"].netdevs == ("enp1s0f1np1",)
    assert claims["/etc/NetworkManager/system-connections/bymac.nmconnection"].netdevs == ("enP2p1s0f0np0",)


def test_a_node_with_no_config_dirs_has_no_owners(tmp_path):
    assert owners(node(tmp_path)) == []


def test_the_fact_command_is_the_shipped_file_with_its_arguments(tmp_path):
    root = node(tmp_path)
    put(root, "/etc/netplan/40-cx7.yaml", CX7)
    fact = QsfpOwners()
    command = fact.command(OWN, QSFP)
    result = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=20,
                            env={"PATH": os.environ["PATH"], "ROOT": str(root)})
    claims = fact.process(result.stdout.splitlines())
    assert [(c.path, c.netdevs) for c in claims] == [("/etc/netplan/40-cx7.yaml", ("enp1s0f1np1", "enP2p1s0f1np1"))]
    assert fact.default() == []


# --- the parser ------------------------------------------------------------------

def test_parser_decodes_values_and_ignores_other_lines():
    lines = [
        "kind=networkmanager path=/etc/NetworkManager/system-connections/a%20b%25.nmconnection "
        "netdevs=enp1s0f0np0 id=a%20b%25",
        "kind=networkd path=/etc/systemd/network/x.network netdevs=enp1s0f0np0,enp1s0f1np1 others=enP7s7",
        "kind=netplan path=/etc/netplan/x.yaml netdevs=enp1s0f0np0 content=" + base64.b64encode(b"a: 1\n").decode(),
        "", "some warning", "kind=other path=/x netdevs=a", "kind=netplan netdevs=a",
    ]
    assert parse_owners(lines) == [
        Claim("networkmanager", "/etc/NetworkManager/system-connections/a b%.nmconnection", ("enp1s0f0np0",),
              id="a b%"),
        Claim("networkd", "/etc/systemd/network/x.network", ("enp1s0f0np0", "enp1s0f1np1"), others=("enP7s7",)),
        Claim("netplan", "/etc/netplan/x.yaml", ("enp1s0f0np0",), content="a: 1\n"),
    ]


def test_netplan_addresses_reads_each_ethernet():
    assert netplan_addresses(CX7) == CX7_EXPECTED
    text = "network:\n  ethernets:\n    a:\n      addresses:\n        - 10.0.0.1/24: {label: x}\n        - 10.0.1.1/24\n    b: {}\n"
    assert netplan_addresses(text) == {"a": ["10.0.0.1/24", "10.0.1.1/24"], "b": []}
    assert netplan_addresses("network: [") == {} and netplan_addresses("just text") == {}


# --- adoption ----------------------------------------------------------------------

def netplan_claim(text, netdevs=("enp1s0f1np1", "enP2p1s0f1np1"), others=()):
    return Claim("netplan", "/etc/netplan/40-cx7.yaml", tuple(netdevs), content=text, others=tuple(others))


def test_a_file_that_says_what_ours_will_say_is_adopted():
    assert adoptable([netplan_claim(CX7)], CX7_EXPECTED)
    # extra QSFP netdevs of ours it does not mention, MTU and link-local are fine
    richer = CX7.replace("dhcp4: no", "dhcp4: no\n      mtu: 9000\n      link-local: []")
    assert adoptable([netplan_claim(richer)], {**CX7_EXPECTED, "enp1s0f0np0": ["10.0.0.1/24"]})


@pytest.mark.parametrize("claims", [
    pytest.param([netplan_claim(CX7.replace("192.168.101.10", "192.168.101.11"))], id="different-address"),
    pytest.param([netplan_claim(CX7.replace("enP2p1s0f1np1", "enp1s0f0np0"), ("enp1s0f1np1", "enp1s0f0np0"))],
                 id="netdev-we-do-not-address"),
    pytest.param([netplan_claim(CX7 + "    enP7s7:\n      dhcp4: true\n")], id="extra-netdev"),
    pytest.param([netplan_claim(CX7), Claim("networkmanager", "/etc/NetworkManager/system-connections/a",
                                            ("enp1s0f0np0",), id="a")], id="nm-claim-too"),
    pytest.param([netplan_claim(CX7.replace("dhcp4: no", "dhcp4: yes"))], id="dhcp"),
    pytest.param([netplan_claim(CX7.replace("dhcp4: no", "dhcp4: no\n      routes: [{to: default, via: 192.168.100.1}]"))],
                 id="routes-would-be-lost"),
    pytest.param([netplan_claim(CX7 + "  bonds:\n    bond1:\n      interfaces: [enp1s0f1np1]\n")], id="bond"),
    pytest.param([netplan_claim(CX7, others=("enP7s7",))], id="others"),
    pytest.param([netplan_claim("network: [")], id="not-yaml"),
    pytest.param([], id="nothing-to-adopt"),
])
def test_anything_else_is_not_adopted(claims):
    assert not adoptable(claims, CX7_EXPECTED)


# --- refusal ---------------------------------------------------------------------

def test_refusal_names_every_owner_and_the_setting():
    claims = [netplan_claim(CX7),
              Claim("networkmanager", "/etc/NetworkManager/system-connections/cx7 port 0.nmconnection",
                    ("enP2p1s0f0np0",), id="cx7 port 0")]
    message = refusal("spark-2", claims)
    assert message == (
        "spark-2: other configuration claims the QSFP ports: "
        "/etc/netplan/40-cx7.yaml (netplan) claims enp1s0f1np1, enP2p1s0f1np1; "
        "NetworkManager profile 'cx7 port 0' (/etc/NetworkManager/system-connections/cx7 port 0.nmconnection) "
        "claims enP2p1s0f0np0; "
        "set qsfp_takeover = True in group_data/all.py to move them aside (backed up under /etc/spark-cluster/takeover/)"
    )
    assert "\n" not in message


def test_refusal_says_a_file_that_also_configures_other_netdevs_is_never_moved():
    wide = Claim("networkd", "/etc/systemd/network/99-en.network", tuple(QSFP), others=("enP7s7",))
    assert unmovable([netplan_claim(CX7), wide]) == [wide]
    message = refusal("spark-1", [wide])
    assert "/etc/systemd/network/99-en.network (networkd) claims enp1s0f0np0" in message
    assert "and also enP7s7" in message and "never moved" in message
    assert "qsfp_takeover" not in message  # the setting would not help


# --- takeover (qsfp_takeover.sh) --------------------------------------------------------

def nmcli_stub(root: Path) -> Path:
    stubs = root / "stubs"
    stubs.mkdir()
    put(stubs, "/nmcli", '#!/bin/sh\necho "$*" >>"$(dirname "$0")/nmcli.calls"\n', 0o755)
    return stubs


def run_takeover(root: Path, *paths: str, stubs: Path | None = None, command: str | None = None):
    path = f"{stubs}:/usr/bin:/bin" if stubs else "/usr/bin:/bin"
    argv = ["sh", "-c", command] if command else ["sh", str(TAKEOVER), TAKEOVER_DIR, *paths]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=20, env={"PATH": path, "ROOT": str(root)})
    assert (result.returncode, result.stderr) == (0, "")
    return result.stdout.splitlines()


def tree(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under root (but the stubs): its bytes and mode."""
    return {str(p.relative_to(root)): (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
            for p in sorted(root.rglob("*")) if p.is_file() and "stubs" not in p.parts}


NM_PATH = "/etc/NetworkManager/system-connections/cx7 port 0.nmconnection"


def test_takeover_moves_aside_keeps_modes_and_restore_puts_everything_back(tmp_path):
    root = node(tmp_path)
    put(root, "/etc/netplan/40-cx7.yaml", CX7, 0o600)
    put(root, NM_PATH, NM_KEYFILE, 0o600)
    put(root, "/etc/systemd/network/10-qsfp.network", NETWORKD_GLOB, 0o644)
    before = tree(root)
    stubs = nmcli_stub(tmp_path)
    claims = owners(root)

    moved = run_takeover(root, stubs=stubs, command=takeover_command(claims))

    backup = root / TAKEOVER_DIR.lstrip("/")
    paths = ["/etc/netplan/40-cx7.yaml", NM_PATH, "/etc/systemd/network/10-qsfp.network"]
    assert moved == [f"moved {p} to {TAKEOVER_DIR}{p}" for p in paths]
    assert owners(root) == []
    for p in paths:
        assert not (root / p.lstrip("/")).exists()
        assert tree(backup)[p.lstrip("/")] == before[p.lstrip("/")]  # same bytes, same mode
    assert (backup / "MANIFEST").read_text().splitlines() == paths
    assert stat.S_IMODE(backup.stat().st_mode) == 0o700
    assert stat.S_IMODE((backup / "restore.sh").stat().st_mode) == 0o700
    # the NM connection is taken down by its uuid, then NetworkManager forgets the file
    assert (stubs / "nmcli.calls").read_text().splitlines() == [
        "connection down 0c6e7a3c-1111-2222-3333-444455556666", "connection reload"]

    restored = subprocess.run([str(backup / "restore.sh")], capture_output=True, text=True, timeout=20,
                              env={"PATH": f"{stubs}:/usr/bin:/bin", "ROOT": str(root)})
    assert restored.returncode == 0, restored.stderr
    assert restored.stdout.splitlines() == [f"restored {p}" for p in paths]
    assert (stubs / "nmcli.calls").read_text().splitlines()[2:] == ["connection reload"]
    after = {name: value for name, value in tree(root).items() if not name.startswith(TAKEOVER_DIR.lstrip("/"))}
    assert after == before
    assert (backup / "MANIFEST").read_text() == ""


def test_a_second_takeover_changes_nothing(tmp_path):
    root = node(tmp_path)
    put(root, "/etc/netplan/40-cx7.yaml", CX7)
    run_takeover(root, "/etc/netplan/40-cx7.yaml")
    first = tree(root)
    mtimes = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    assert run_takeover(root, "/etc/netplan/40-cx7.yaml") == []
    assert tree(root) == first
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == mtimes


def test_takeover_of_nothing_creates_no_backup(tmp_path):
    root = node(tmp_path)
    assert run_takeover(root, "/etc/netplan/40-cx7.yaml") == []
    assert not (root / "etc/spark-cluster").exists()


def test_a_file_written_again_after_a_takeover_keeps_the_first_backup(tmp_path):
    root = node(tmp_path)
    put(root, "/etc/netplan/40-cx7.yaml", CX7)
    run_takeover(root, "/etc/netplan/40-cx7.yaml")
    put(root, "/etc/netplan/40-cx7.yaml", "network: {}\n")
    moved = run_takeover(root, "/etc/netplan/40-cx7.yaml")
    backup = root / TAKEOVER_DIR.lstrip("/")
    assert len(moved) == 1 and f"{TAKEOVER_DIR}/superseded/" in moved[0]
    assert (backup / "etc/netplan/40-cx7.yaml").read_text() == CX7
    assert [p.read_text() for p in (backup / "superseded").rglob("40-cx7.yaml")] == ["network: {}\n"]
    assert (backup / "MANIFEST").read_text().splitlines() == ["/etc/netplan/40-cx7.yaml"]


def test_restore_leaves_a_path_that_exists_again_alone(tmp_path):
    root = node(tmp_path)
    put(root, "/etc/netplan/40-cx7.yaml", CX7)
    run_takeover(root, "/etc/netplan/40-cx7.yaml")
    put(root, "/etc/netplan/40-cx7.yaml", "mine\n")
    backup = root / TAKEOVER_DIR.lstrip("/")
    result = subprocess.run([str(backup / "restore.sh")], capture_output=True, text=True, timeout=20,
                            env={"PATH": "/usr/bin:/bin", "ROOT": str(root)})
    assert result.returncode == 1 and "not restored: /etc/netplan/40-cx7.yaml exists" in result.stderr
    assert (root / "etc/netplan/40-cx7.yaml").read_text() == "mine\n"
    assert (backup / "etc/netplan/40-cx7.yaml").read_text() == CX7
    assert (backup / "MANIFEST").read_text().splitlines() == ["/etc/netplan/40-cx7.yaml"]


def test_takeover_command_names_each_path_once():
    claims = [netplan_claim(CX7), netplan_claim(CX7), Claim("networkd", "/etc/systemd/network/a b.network", ("x",))]
    command = takeover_command(claims, "/var/backup")
    assert command.endswith("qsfp_takeover.sh /var/backup /etc/netplan/40-cx7.yaml '/etc/systemd/network/a b.network'")


def test_a_netplan_file_networkmanager_wrote_takes_its_connection_down(tmp_path):
    root = node(tmp_path)
    put(root, "/etc/netplan/90-NM-abc.yaml", "network:\n  ethernets:\n    NM-abc:\n      renderer: NetworkManager\n"
        "      match: {name: enp1s0f0np0}\n      networkmanager:\n        uuid: \"abc-123\"\n")
    put(root, "/etc/netplan/40-cx7.yaml", CX7)
    stubs = nmcli_stub(tmp_path)
    run_takeover(root, "/etc/netplan/40-cx7.yaml", "/etc/netplan/90-NM-abc.yaml", stubs=stubs)
    assert (stubs / "nmcli.calls").read_text().splitlines() == ["connection down abc-123", "connection reload"]


def test_the_restore_script_it_writes_is_clean_sh(tmp_path):
    root = node(tmp_path)
    put(root, "/etc/netplan/40-cx7.yaml", CX7)
    run_takeover(root, "/etc/netplan/40-cx7.yaml")
    restore = root / TAKEOVER_DIR.lstrip("/") / "restore.sh"
    result = subprocess.run(["shellcheck", "--shell=sh", "--severity=style", str(restore)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout
