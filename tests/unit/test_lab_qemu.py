"""The qemu command lines: only 127.0.0.1, restricted user net, TCG, the right wiring."""

import re
from pathlib import Path

import pytest

from lab import lab_nodes, qemu, state, topology
from lab.image import Image

IMAGE = Image(Path("/cache/abc"))


@pytest.fixture(autouse=True)
def default_ports(monkeypatch, tmp_path):
    for name in ("SPARK_LAB_SSH_BASE", "SPARK_LAB_LINK_BASE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SPARK_LAB_DIR", str(tmp_path / "state"))


def option_values(argv, option):
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == option]


def addresses(argv):
    return set(re.findall(r"(\d+\.\d+\.\d+\.\d+)", " ".join(argv)))


def udp_links(argv):
    links = {}
    for value in option_values(argv, "-netdev"):
        match = re.match(r"socket,id=(qsfp\d),udp=127\.0\.0\.1:(\d+),localaddr=127\.0\.0\.1:(\d+)$", value)
        if match:
            links[match[1]] = (int(match[3]), int(match[2]))  # (local, remote)
    return links


@pytest.mark.parametrize("count", [2, 4])
def test_every_node_uses_tcg_restricted_user_net_and_loopback_only(count):
    for index in range(1, count + 1):
        argv = qemu.qemu_argv(index, count, IMAGE)
        assert option_values(argv, "-accel") == ["tcg,thread=multi"]
        assert "-enable-kvm" not in argv
        mgmt = [v for v in option_values(argv, "-netdev") if v.startswith("user,")]
        assert mgmt == [f"user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:{2220 + index}-:22"]
        # 10.0.2.2 is not in the argv: the only address is the host's loopback.
        assert addresses(argv) == {"127.0.0.1"}
        assert option_values(argv, "-smp") == ["1"] and option_values(argv, "-m") == ["1536"]
        append = option_values(argv, "-append")[0]
        assert f"systemd.hostname=spark-{index}" in append and "root=/dev/vda" in append


@pytest.mark.parametrize("count", [2, 4])
def test_nics_sit_at_the_pci_slots_the_image_names(count):
    argv = qemu.qemu_argv(1, count, IMAGE)
    devices = option_values(argv, "-device")
    assert any("netdev=mgmt,addr=0x3" in d for d in devices)
    assert any("netdev=qsfp0,addr=0x4" in d and "host_mtu=9000" in d for d in devices)
    assert any("netdev=qsfp1,addr=0x5" in d and "host_mtu=9000" in d for d in devices)
    macs = re.findall(r"mac=([0-9a-f:]+)", " ".join(devices))
    assert len(macs) == len(set(macs)) == 3


def test_two_nodes_are_cabled_port_to_port():
    one = udp_links(qemu.qemu_argv(1, 2, IMAGE))
    two = udp_links(qemu.qemu_argv(2, 2, IMAGE))
    for nic in ("qsfp0", "qsfp1"):
        assert one[nic][1] == two[nic][0] and two[nic][1] == one[nic][0]
    assert one["qsfp0"] == (4230, 4240) and one["qsfp1"] == (4231, 4241)


def test_four_nodes_reach_one_switch_per_port_index():
    specs = dict(topology.switch_specs(4))
    assert specs == {4220: [4230, 4240, 4250, 4260], 4221: [4231, 4241, 4251, 4261]}
    for index in range(1, 5):
        links = udp_links(qemu.qemu_argv(index, 4, IMAGE))
        assert links["qsfp0"] == (state.nic_port(index, 0), 4220)
        assert links["qsfp1"] == (state.nic_port(index, 1), 4221)


def test_all_host_ports_are_distinct_for_four_nodes():
    ports = [state.ssh_port(i) for i in range(1, 5)]
    ports += [p for i in range(1, 5) for p in topology.udp_ports(i)]
    ports += [p for p, _ in topology.switch_specs(4)]
    assert len(ports) == len(set(ports))


def test_ssh_base_moves_every_port(monkeypatch):
    monkeypatch.setenv("SPARK_LAB_SSH_BASE", "3000")
    argv = qemu.qemu_argv(2, 2, IMAGE)
    assert "hostfwd=tcp:127.0.0.1:3002-:22" in " ".join(argv)
    assert udp_links(argv)["qsfp0"] == (5020, 5010)


def test_lab_nodes_describe_how_to_reach_each_vm(monkeypatch, tmp_path):
    monkeypatch.setenv("SPARK_LAB_CACHE", str(tmp_path / "cache"))
    nodes = lab_nodes(4)
    assert [n["name"] for n in nodes] == ["spark-1", "spark-2", "spark-3", "spark-4"]
    assert [n["ssh_port"] for n in nodes] == [2221, 2222, 2223, 2224]
    first = nodes[0]
    assert first["ssh_hostname"] == "127.0.0.1" and first["ssh_user"] == "spark"
    assert first["sudo_password"] == "spark"
    assert Path(first["ssh_key"]).is_absolute() and first["ssh_key"].startswith(str(tmp_path / "cache"))
    assert first["ssh_known_hosts_file"] == str(tmp_path / "state" / "known_hosts")
    assert not (tmp_path / "cache").exists() and not (tmp_path / "state").exists()


def test_state_dir_defaults_to_the_repo(monkeypatch):
    monkeypatch.delenv("SPARK_LAB_DIR")
    assert state.state_dir() == state.REPO / ".lab"
