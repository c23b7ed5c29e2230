"""The qemu command lines: only 127.0.0.1, restricted user net, TCG, the right wiring."""

import re
from pathlib import Path

import pytest

from lab import image, lab_nodes, qemu, state, topology
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
def test_four_qsfp_nics_sit_at_the_pci_slots_the_image_names(count):
    argv = qemu.qemu_argv(1, count, IMAGE)
    devices = option_values(argv, "-device")
    assert any("netdev=mgmt,addr=0x3" in d for d in devices)
    nics = {re.search(r"netdev=(qsfp\d)", d)[1]: d for d in devices if "netdev=qsfp" in d}
    assert sorted(nics) == ["qsfp0", "qsfp1", "qsfp2", "qsfp3"]
    slots = {netdev: re.search(r"addr=(0x[0-9a-f]+)", d)[1] for netdev, d in nics.items()}
    assert slots == {"qsfp0": "0x4", "qsfp1": "0x5", "qsfp2": "0x6", "qsfp3": "0x7"}
    assert all("host_mtu=9000" in d for d in nics.values())
    every_slot = re.findall(r"addr=(0x[0-9a-f]+)", " ".join(devices))
    assert len(every_slot) == len(set(every_slot))  # disk and rng moved out of the QSFP range
    macs = re.findall(r"mac=([0-9a-f:]+)", " ".join(devices))
    assert len(macs) == len(set(macs)) == 5
    assert qemu.mac(1, 0) in devices[[i for i, d in enumerate(devices) if "netdev=mgmt" in d][0]]


def test_the_qsfp_slots_carry_the_sparks_names_through_the_images_link_files():
    links = {}
    for path in (image.RECIPE_DIR / "files/etc/systemd/network").glob("*.link"):
        text = path.read_text()
        links[re.search(r"^Path=pci-0000:00:(..)\.0$", text, re.M)[1]] = re.search(r"^Name=(\S+)$", text, re.M)[1]
    devices = option_values(qemu.qemu_argv(1, 2, IMAGE), "-device")
    named = {}
    for device in devices:
        match = re.search(r"netdev=(qsfp\d),addr=0x([0-9a-f]+)", device)
        if match:
            named[match[1]] = links[f"{int(match[2], 16):02x}"]
    assert named == {"qsfp0": "enp1s0f0np0", "qsfp1": "enP2p1s0f0np0",
                     "qsfp2": "enp1s0f1np1", "qsfp3": "enP2p1s0f1np1"}
    assert links["03"] == "enP7s7"


def test_vms_start_paused_so_a_cable_is_pulled_before_the_guest_runs():
    assert "-S" in qemu.qemu_argv(1, 2, IMAGE)


def test_two_nodes_wire_each_half_to_the_same_half_of_the_same_port():
    one = udp_links(qemu.qemu_argv(1, 2, IMAGE))
    two = udp_links(qemu.qemu_argv(2, 2, IMAGE))
    assert sorted(one) == sorted(two) == ["qsfp0", "qsfp1", "qsfp2", "qsfp3"]
    for nic in one:
        assert one[nic][1] == two[nic][0] and two[nic][1] == one[nic][0]
    assert one == {"qsfp0": (4230, 4240), "qsfp1": (4231, 4241), "qsfp2": (4232, 4242), "qsfp3": (4233, 4243)}


@pytest.mark.parametrize("cables, lanes", [("port1", (2, 3)), ("both", (0, 1, 2, 3))])
def test_four_nodes_put_every_cabled_half_on_one_switch(cables, lanes):
    specs = topology.switch_specs(4, cables)
    assert len(specs) == 1  # one L2 domain
    port, members = specs[0]
    assert port == 4220
    assert sorted(members) == sorted(4220 + 10 * i + lane for i in range(1, 5) for lane in lanes)
    for index in range(1, 5):
        links = udp_links(qemu.qemu_argv(index, 4, IMAGE))
        assert links == {f"qsfp{lane}": (state.nic_port(index, lane), 4220) for lane in range(4)}


def test_all_host_ports_are_distinct_for_four_nodes():
    ports = [state.ssh_port(i) for i in range(1, 5)]
    ports += [p for i in range(1, 5) for p in topology.udp_ports(i)]
    ports += [p for p, _ in topology.switch_specs(4, "both")]
    assert len(ports) == len(set(ports)) == 4 + 16 + 1


def test_ssh_base_moves_every_port(monkeypatch):
    monkeypatch.setenv("SPARK_LAB_SSH_BASE", "3000")
    argv = qemu.qemu_argv(2, 2, IMAGE)
    assert "hostfwd=tcp:127.0.0.1:3002-:22" in " ".join(argv)
    assert udp_links(argv)["qsfp0"] == (5020, 5010)
    assert udp_links(argv)["qsfp3"] == (5023, 5013)


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
