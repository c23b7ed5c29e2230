"""`python -m lab plant-nvidia`: the files NVIDIA's playbook leaves behind, and that the
project's own owner finder (qsfp_owners.sh) sees them as that playbook's configuration."""

import base64
import configparser
import os
import re
import subprocess

import yaml

from lab import plant
from spark_cluster.qsfp_owners import OWNERS, parse_owners

QSFP = ["enp1s0f0np0", "enP2p1s0f0np0", "enp1s0f1np1", "enP2p1s0f1np1"]


def test_netplan_file_addresses_both_halves_of_port_1_on_two_subnets_like_the_playbook():
    for index, host in ((1, 10), (2, 11), (4, 13)):
        text = plant.netplan_text(index)
        parsed = yaml.safe_load(text)["network"]
        assert parsed["version"] == 2 and "renderer" not in parsed  # netplan's default: networkd
        assert parsed["ethernets"] == {
            "enp1s0f1np1": {"addresses": [f"192.168.100.{host}/24"], "dhcp4": False},
            "enP2p1s0f1np1": {"addresses": [f"192.168.101.{host}/24"], "dhcp4": False},
        }
        assert "dhcp4: no" in text  # the playbook's spelling


def test_nm_profiles_bind_each_netdev_with_the_same_manual_address():
    for netdev, address in plant.addresses(2).items():
        profile = configparser.ConfigParser(interpolation=None)
        profile.read_string(plant.profile_text(2, netdev))
        assert profile["connection"]["interface-name"] == netdev
        assert profile["connection"]["type"] == "ethernet"
        assert profile["ipv4"]["method"] == "manual" and profile["ipv4"]["address1"] == address
    assert plant.profile_path("enp1s0f1np1") == \
        "/etc/NetworkManager/system-connections/cx7 enp1s0f1np1.nmconnection"


def test_planting_twice_writes_the_same_bytes_and_nodes_differ():
    assert plant.planted_files(1) == plant.planted_files(1)
    assert plant.plant_script(1) == plant.plant_script(1)
    one, two = plant.planted_files(1), plant.planted_files(2)
    assert set(one) == set(two) and all(one[p] != two[p] for p in one)  # addresses and uuids


def test_the_script_writes_every_file_root_only_then_applies_netplan_and_nm():
    script = plant.plant_script(3)
    assert subprocess.run(["sh", "-n"], input=script, text=True).returncode == 0
    written = {}
    for encoded, path in re.findall(r"^echo (\S+) \| base64 -d > (.+)$", script, re.M):
        written[path.strip("'")] = base64.b64decode(encoded).decode()
        assert f"chown root:root {path} && chmod 600 {path}" in script
    assert written == plant.planted_files(3)
    assert script.index("nmcli connection reload") < script.index("netplan apply")
    assert "umask 077" in script


def test_the_deploys_owner_finder_sees_the_planted_files_as_other_owners(tmp_path):
    root = tmp_path
    for path, text in plant.planted_files(2).items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(0o600)
    for name in QSFP:
        (root / "sys/class/net" / name).mkdir(parents=True)
        (root / "sys/class/net" / name / "address").write_text("4c:bb:47:00:00:01\n")
    result = subprocess.run(["sh", str(OWNERS), "/etc/netplan/40-spark-cluster.yaml", *QSFP],
                            capture_output=True, text=True, timeout=20,
                            env={"PATH": os.environ["PATH"], "ROOT": str(root)})
    assert (result.returncode, result.stderr) == (0, "")
    claims = {claim.path: claim for claim in parse_owners(result.stdout.splitlines())}
    assert claims[plant.NETPLAN_PATH].netdevs == ("enp1s0f1np1", "enP2p1s0f1np1")
    for netdev in ("enp1s0f1np1", "enP2p1s0f1np1"):
        assert claims[plant.profile_path(netdev)].netdevs == (netdev,)
    assert len(claims) == 3
