"""Preflight's pure parts: reading a node's inventory and comparing the nodes."""

import os
import pwd
import shutil
import subprocess

import pytest

from roles.preflight.compare import compare_nodes, nccl_warning, summary_line
from roles.preflight.facts import (NO_DRIVER, NO_RDMA, NODE_INVENTORY, NodeInventory, driver_version,
                                   parse_node_inventory)
from spark_cluster.fabric import PORT_HALVES, QSFP_NETDEVS, fabric

# QSFP_NETDEVS in order: port 0 half 0, port 0 half 1, port 1 half 0, port 1 half 1.
P0A, P0B, P1A, P1B = QSFP_NETDEVS
DGX_RDMA = {netdev: device for halves in PORT_HALVES.values() for netdev, device in halves}


def host_data(**overrides):
    """A node's host data as define_cluster derives it (what fabric() needs)."""
    return {"qsfp_ip": "192.168.100.10", "qsfp_prefixlen": 24, "peers": [{"qsfp_ip": "192.168.100.11"}],
            "ssh_hostname": "192.0.2.11", **overrides}


def rails(ports=(1,)):
    return fabric(host_data(qsfp_ports=list(ports))).rails


def node(kernel="6.17.0-1014-nvidia", driver="580.142", image="sha256:aaa", links=None, rdma=None, disk=500.0):
    """A Spark's facts: one QSFP112 cable in port 1 (both halves up, port 0's halves
    without carrier), every RDMA device named as DGX OS names it; `links` and
    `rdma` override single netdevs."""
    return {
        "kernel": kernel,
        "driver": driver,
        "image_id": image,
        "carriers": {P0A: "down", P0B: "down", P1A: "up", P1B: "up", **(links or {})},
        "rdma": {**DGX_RDMA, **(rdma or {})},
        "disk_path": "/home/nvidia",
        "disk_free_gib": disk,
    }


def compare(facts, **kwargs):
    kwargs.setdefault("rails", rails())
    kwargs.setdefault("min_disk_gib", 200)
    return compare_nodes(facts, **kwargs)


def found(problems):
    return [(p.node, p.field, p.found, p.kind) for p in problems]


# --- the fact -------------------------------------------------------------------

def test_parse_a_real_spark():
    lines = [
        "kernel=6.17.0-1014-nvidia",
        "driver_proc=NVRM version: NVIDIA UNIX Open Kernel Module for aarch64  580.142  Release Build  "
        "(dvs-builder@U16-I3-B03-4-3)  Thu Sep 25 2025",
        "driver_smi=580.142",
        "image_id=sha256:0123456789abcdef",
        "nccl=2.30.4-1",
        "carrier.enp1s0f0np0=0",
        "rdma.enp1s0f0np0=rocep1s0f0",
        "carrier.enp1s0f1np1=1",
        "rdma.enp1s0f1np1=rocep1s0f1",
        "admin_home=/home/nvidia nvidia",
        "disk_path=/home/nvidia",
        "disk_avail_kib=3145728000",
    ]
    assert parse_node_inventory(lines) == {
        "admin": {"home": "/home/nvidia", "owner": "nvidia"},
        "kernel": "6.17.0-1014-nvidia",
        "driver": "580.142",
        "image_id": "sha256:0123456789abcdef",
        "nccl": "2.30.4-1",
        "carriers": {"enp1s0f0np0": "down", "enp1s0f1np1": "up"},
        "rdma": {"enp1s0f0np0": "rocep1s0f0", "enp1s0f1np1": "rocep1s0f1"},
        "disk_path": "/home/nvidia",
        "disk_free_gib": 3000.0,
    }


def test_parse_a_lab_vm_without_gpu_docker_or_configured_ports():
    lines = [
        "kernel=6.8.0-51-generic",
        "carrier.enp1s0f0np0=unknown",
        "rdma.enp1s0f0np0=",
        "carrier.enp1s0f1np1=absent",
        "rdma.enp1s0f1np1=none",
        "disk_path=/home/spark",
        "disk_avail_kib=",
    ]
    facts = parse_node_inventory(lines)
    assert facts["driver"] == NO_DRIVER
    assert facts["image_id"] is None
    assert facts["carriers"] == {"enp1s0f0np0": "unknown", "enp1s0f1np1": "absent"}
    assert facts["rdma"] == {"enp1s0f0np0": NO_RDMA, "enp1s0f1np1": NO_RDMA}
    assert facts["disk_free_gib"] is None


@pytest.mark.parametrize("proc, smi, expected", [
    ("NVRM version: NVIDIA UNIX Open Kernel Module for aarch64  580.95.05  Release Build", None, "580.95.05"),
    (None, "580.142", "580.142"),
    (None, "", NO_DRIVER),
    (None, None, NO_DRIVER),
])
def test_driver_version(proc, smi, expected):
    assert driver_version(proc, smi) == expected


# --- the fact's script (files/node_inventory.sh), run against a fake sysfs, /proc and stub tools

BANNER = "NVRM version: NVIDIA UNIX Open Kernel Module for aarch64  580.142  Release Build  (dvs-builder@U16)"
IMAGE_ID = "sha256:0123456789abcdef"
# What the script runs besides shell builtins: linked into the only directory on PATH,
# so a docker or nvidia-smi of the machine running the tests is never found.
TOOLS = ("sh", "uname", "head", "getent", "cut", "df", "awk", "cat", "sed", "readlink", "stat")
# docker: its arguments one per line in $STUBS/docker_args, then what
# `docker image inspect --format` prints for an NGC image.
FAKE_DOCKER = f"""#!/bin/sh
printf '%s\\n' "$@" > "$STUBS/docker_args"
printf 'image_id={IMAGE_ID}\\nenv.PATH=/usr/local/bin\\nenv.NCCL_VERSION=2.30.4-1\\n'
"""
FAKE_NVIDIA_SMI = """#!/bin/sh
[ "$*" = "--query-gpu=driver_version --format=csv,noheader" ] && echo 580.95.05
"""
# sysfs carrier per netdev: "1"/"0", None = unreadable (administratively down).
# A fresh Spark with one QSFP112 cable in port 1: DGX OS's NetworkManager
# profiles brought port 0's first half up (no carrier); its second half is down.
CABLE_IN_PORT_1 = {P0A: "0", P0B: None, P1A: "1", P1B: "1"}
CABLE_IN_PORT_0 = {P0A: "1", P0B: "1", P1A: "0", P1B: "0"}


class FakeNode:
    """A temp sysfs and /proc, and a PATH of the script's tools plus the stubs asked for.

    carriers: {netdev: sysfs carrier}, a netdev left out does not exist;
    mlx5: {RDMA device: netdev of its PCI function} (device/net/NETDEV);
    rxe: {soft-RoCE device: its parent netdev}; masters: {netdev: its bond}."""

    def __init__(self, root, banner=BANNER, docker=True, nvidia_smi=True, carriers=CABLE_IN_PORT_1,
                 mlx5=None, rxe=None, masters=None):
        self.root, self.stubs = root, root / "stubs"
        net, infiniband = root / "sys/class/net", root / "sys/class/infiniband"
        for netdev, carrier in carriers.items():
            (net / netdev).mkdir(parents=True)
            if carrier is not None:
                (net / netdev / "carrier").write_text(carrier + "\n")
        for netdev, bond in (masters or {}).items():
            (net / bond).mkdir(exist_ok=True)
            (net / netdev / "master").symlink_to(f"../{bond}")
        mlx5 = {device: netdev for netdev, device in DGX_RDMA.items()} if mlx5 is None else mlx5
        for device, netdev in mlx5.items():
            (infiniband / device / "device/net" / netdev).mkdir(parents=True)
        for device, parent in (rxe or {}).items():
            (infiniband / device).mkdir(parents=True)
            (infiniband / device / "parent").write_text(parent + "\n")
        if banner:
            (root / "proc/driver/nvidia").mkdir(parents=True)
            (root / "proc/driver/nvidia/version").write_text(banner + "\nGCC version: 13\n")
        (self.stubs / "bin").mkdir(parents=True)
        for tool in TOOLS:
            (self.stubs / "bin" / tool).symlink_to(shutil.which(tool))
        for name, text, wanted in (("docker", FAKE_DOCKER, docker), ("nvidia-smi", FAKE_NVIDIA_SMI, nvidia_smi)):
            if wanted:
                (self.stubs / "bin" / name).write_text(text)
                (self.stubs / "bin" / name).chmod(0o755)

    def run(self, argv):
        env = {"PATH": str(self.stubs / "bin"), "STUBS": str(self.stubs),
               "SYSFS_ROOT": str(self.root / "sys"), "PROC_ROOT": str(self.root / "proc")}
        return subprocess.run(argv, capture_output=True, text=True, timeout=10, env=env)

    def inventory(self, user, image, netdevs=QSFP_NETDEVS):
        result = self.run(["sh", str(NODE_INVENTORY), user, image, *netdevs])
        assert (result.returncode, result.stderr) == (0, "")
        return result.stdout.splitlines()

    def facts(self):
        return parse_node_inventory(self.inventory("root", ""))

    def docker_args(self):
        path = self.stubs / "docker_args"
        return path.read_text().splitlines() if path.exists() else None


def test_inventory_script_reads_a_spark(tmp_path):
    me = pwd.getpwuid(os.getuid())
    facts = parse_node_inventory(FakeNode(tmp_path).inventory(me.pw_name, "vllm-ds4-sm121:latest"))
    free = shutil.disk_usage(me.pw_dir).free / 1024**3
    assert abs(facts.pop("disk_free_gib") - free) < 1, "df's available KiB of the admin's home"
    assert facts == {
        "kernel": os.uname().release,
        "driver": "580.142",  # the /proc banner wins over nvidia-smi
        "image_id": IMAGE_ID,
        "nccl": "2.30.4-1",
        "carriers": {"enp1s0f0np0": "down", "enP2p1s0f0np0": "unknown",
                     "enp1s0f1np1": "up", "enP2p1s0f1np1": "up"},
        "rdma": {"enp1s0f0np0": "rocep1s0f0", "enP2p1s0f0np0": "roceP2p1s0f0",
                 "enp1s0f1np1": "rocep1s0f1", "enP2p1s0f1np1": "roceP2p1s0f1"},
        "admin": {"home": me.pw_dir, "owner": me.pw_name},
        "disk_path": me.pw_dir,
    }


def test_inventory_script_on_a_node_without_driver_docker_or_admin(tmp_path):
    node = FakeNode(tmp_path, banner=None, docker=False, nvidia_smi=False)
    facts = parse_node_inventory(node.inventory("spark-cluster-nobody", "vllm:latest", [*QSFP_NETDEVS, "enp2s0"]))
    assert (facts["driver"], facts["image_id"], facts["nccl"]) == (NO_DRIVER, None, None)
    assert (facts["carriers"]["enp2s0"], facts["rdma"]["enp2s0"]) == ("absent", NO_RDMA)
    assert facts["disk_path"] == "/", "no home: the root filesystem's free space"
    assert facts["admin"] is False, "no such account"
    assert facts["disk_free_gib"] is not None


def test_inventory_script_finds_soft_roce_devices_by_parent_and_through_a_bond(tmp_path):
    # The lab: rxe devices named like a CX-7's; port 1's first half is bonded and
    # its rxe followed it onto bond0 (lab-rxe), port 0's second half has none.
    node = FakeNode(tmp_path, mlx5={}, masters={P1A: "bond0", P1B: "bond0"},
                    rxe={"rocep1s0f0": P0A, "rocep1s0f1": "bond0", "roceP2p1s0f1": P1B, "rxe_other": "eth0"})
    assert node.facts()["rdma"] == {P0A: "rocep1s0f0", P0B: NO_RDMA, P1A: "rocep1s0f1", P1B: "roceP2p1s0f1"}


def test_inventory_script_reports_none_without_any_rdma_device(tmp_path):
    facts = FakeNode(tmp_path, mlx5={}).facts()
    assert facts["rdma"] == {netdev: NO_RDMA for netdev in QSFP_NETDEVS}
    assert facts["carriers"][P1A] == "up", "carriers are read all the same"


def test_inventory_script_falls_back_to_nvidia_smi(tmp_path):
    lines = FakeNode(tmp_path, banner=None).inventory("root", "")
    assert parse_node_inventory(lines)["driver"] == "580.95.05"


def test_inventory_script_takes_the_image_as_one_argument_and_skips_docker_without_one(tmp_path):
    node = FakeNode(tmp_path)
    node.inventory("root", "vllm:x;rm -rf /")
    assert node.docker_args() == [
        "image", "inspect", "--format",
        "image_id={{.Id}}{{range .Config.Env}}{{println}}env.{{.}}{{end}}",
        "vllm:x;rm -rf /",
    ]
    (node.stubs / "docker_args").unlink()
    lines = node.inventory("root", "")
    assert node.docker_args() is None and not any(line.startswith("image_id=") for line in lines)


def test_inventory_script_needs_the_admin_and_the_image(tmp_path):
    result = FakeNode(tmp_path).run(["sh", str(NODE_INVENTORY), "root"])
    assert result.returncode == 2 and result.stderr.startswith("usage: node_inventory.sh USER IMAGE")


def test_fact_sends_the_shipped_script_with_its_inputs_as_arguments(tmp_path):
    command = NodeInventory().command(list(QSFP_NETDEVS), "vllm:x;rm -rf /", "")
    assert command.startswith("sh -c ") and command.endswith(
        " node_inventory.sh root 'vllm:x;rm -rf /' enp1s0f0np0 enP2p1s0f0np0 enp1s0f1np1 enP2p1s0f1np1"
    ), "no admin named: root's home"
    node = FakeNode(tmp_path)
    result = node.run(["sh", "-c", command])
    assert (result.returncode, result.stderr) == (0, "")

    def steady(lines):  # free space moves between two runs on a busy disk
        return [line.split("=")[0] if line.startswith("disk_avail_kib=") else line for line in lines]

    assert steady(result.stdout.splitlines()) == steady(node.inventory("root", "vllm:x;rm -rf /"))
    assert node.docker_args()[-1] == "vllm:x;rm -rf /"


# --- the hardware against group_data: the script's facts from fake nodes, compared

def two_nodes(tmp_path, **layouts):
    """{name: facts} of spark-1 and spark-2, each a FakeNode(**layouts.get(name, {})).
    Free space is the test machine's: out of the comparison."""
    facts = {name: FakeNode(tmp_path / name, **layouts.get(name, {})).facts() for name in ("spark-1", "spark-2")}
    for value in facts.values():
        value["disk_free_gib"] = 500.0
    return facts


def test_one_cable_in_port_1_on_both_nodes_is_what_group_data_says(tmp_path):
    facts = two_nodes(tmp_path)
    assert compare(facts, rails=rails([1]), carrier_required="all") == []


def test_cable_in_port_0_while_group_data_says_port_1(tmp_path):
    facts = two_nodes(tmp_path, **{"spark-2": {"carriers": CABLE_IN_PORT_0}})
    problems = compare(facts, rails=rails([1]))
    assert {p.node for p in problems} == {"spark-2"}
    assert [p.message for p in problems if p.field.startswith("carrier on")] == [
        f"spark-2: carrier on {netdev} is up, expected none: qsfp_ports [1] does not name port 0; "
        "is the cable in port 0? set qsfp_ports = [0] in group_data (or [0, 1] with both ports cabled)"
        for netdev in (P0A, P0B)
    ]
    # ... and the rails group_data names are dark: the deploy would configure dead links.
    assert [(p.field, p.found, p.fix) for p in problems if p.field.startswith("QSFP link")] == [
        (f"QSFP link {netdev}", "down", "the carrier is on a QSFP netdev qsfp_ports does not name (its own line says which)")
        for netdev in (P1A, P1B)]
    assert all(p.kind == "node" for p in problems)
    # The same hardware is right once group_data says port 0.
    assert compare(facts, rails={"spark-1": rails([1]), "spark-2": rails([0])}) == []


def test_one_half_down_with_a_qsfp28_cable(tmp_path):
    # QSFP28/QSFP56 cables bring up one PCIe half of the port only.
    facts = two_nodes(tmp_path, **{name: {"carriers": {P0A: "0", P0B: "0", P1A: "1", P1B: "0"}}
                                   for name in ("spark-1", "spark-2")})
    problems = compare(facts, carrier_required="all")
    assert found(problems) == [("spark-1", f"QSFP link {P1B}", "down", "node"),
                               ("spark-2", f"QSFP link {P1B}", "down", "node")]
    assert problems[0].message == (
        f"spark-1: QSFP link {P1B} is down, expected up; {P1A}, the other half of port 1, has link: "
        'a QSFP28/QSFP56 cable brings up one half only; use a QSFP112 cable, or set qsfp_carrier_required = "any"')
    assert compare(facts, carrier_required="any") == []


def test_a_rail_without_rdma_device(tmp_path):
    mlx5 = {device: netdev for netdev, device in DGX_RDMA.items() if netdev != P1B}
    facts = two_nodes(tmp_path, **{"spark-1": {"mlx5": mlx5}})
    problems = compare(facts)
    assert found(problems) == [("spark-1", f"RDMA device on rail {P1B}", "none", "node")]
    assert problems[0].message.startswith(
        f"spark-1: RDMA device on rail {P1B} is none, expected roceP2p1s0f1; NCCL would fall back to TCP")


def test_rdma_devices_named_otherwise_only_warn(tmp_path):
    mlx5 = {"mlx5_0": P0A, "mlx5_1": P0B, "mlx5_2": P1A, "mlx5_3": P1B}
    facts = two_nodes(tmp_path, **{"spark-2": {"mlx5": mlx5}})
    problems = compare(facts)
    assert found(problems) == [("spark-2", f"RDMA device on rail {P1A}", "mlx5_2", "warning"),
                               ("spark-2", f"RDMA device on rail {P1B}", "mlx5_3", "warning")]
    assert "mlx5_2" in problems[0].message and "rocep1s0f1" in problems[0].message


# --- comparing nodes ----------------------------------------------------------------

def test_consistent_cluster_has_no_problem():
    assert compare({f"spark-{i}": node() for i in range(1, 5)}) == []


def test_no_driver_anywhere_is_consistent():
    assert compare({"a": node(driver="none"), "b": node(driver="none")}) == []


def test_kernel_mismatch_flags_the_odd_node_only():
    facts = {f"spark-{i}": node() for i in range(1, 5)}
    facts["spark-3"] = node(kernel="6.17.0-1012-nvidia")
    problems = compare(facts)
    assert [(p.node, p.field, p.found) for p in problems] == [("spark-3", "kernel", "6.17.0-1012-nvidia")]
    assert problems[0].kind == "mismatch"
    assert problems[0].message == (
        "spark-3: kernel is 6.17.0-1012-nvidia, expected 6.17.0-1014-nvidia (as on spark-1, spark-2, spark-4)"
    )


def test_two_nodes_that_disagree_both_fail_naming_both_values():
    problems = compare({"spark-1": node(driver="580.142"), "spark-2": node(driver="580.95.05")})
    assert [p.node for p in problems] == ["spark-1", "spark-2"]
    for problem in problems:
        assert problem.field == "NVIDIA driver"
        assert "spark-1=580.142" in problem.message and "spark-2=580.95.05" in problem.message


def test_even_split_fails_every_node():
    facts = {"a": node(kernel="k1"), "b": node(kernel="k1"), "c": node(kernel="k2"), "d": node(kernel="k2")}
    assert sorted(p.node for p in compare(facts)) == ["a", "b", "c", "d"]


def test_image_is_compared_only_where_it_exists():
    facts = {"a": node(image="sha256:aaa"), "b": node(image=None), "c": node(image="sha256:aaa")}
    assert compare(facts) == []
    facts["b"] = node(image="sha256:bbb")
    assert [(p.node, p.field) for p in compare(facts)] == [("b", "engine image id")]


def test_link_down_on_every_rail_fails_the_node_whatever_is_required():
    for required in ("all", "any"):
        problems = compare({"a": node(), "b": node(links={P1A: "down", P1B: "down"})}, carrier_required=required)
        assert found(problems) == [("b", f"QSFP link {P1A}", "down", "node"), ("b", f"QSFP link {P1B}", "down", "node")]
        assert problems[0].message.endswith("is the cable in port 1 (qsfp_ports), firmly, and the peer powered on?")


def test_any_rail_down_fails_when_all_are_required_the_default():
    facts = {"a": node(links={P1A: "down"}), "b": node()}
    assert found(compare(facts)) == [("a", f"QSFP link {P1A}", "down", "node")]
    assert compare(facts, carrier_required="any") == []


def test_four_rails_when_both_ports_are_cabled():
    both = {P0A: "up", P0B: "up"}
    assert compare({"a": node(links=both), "b": node(links=both)}, rails=rails([0, 1])) == []
    # A second cable in port 0 while group_data names port 1 only: named, with
    # the one setting that fits.
    problems = compare({"a": node(links=both), "b": node()}, rails=rails([1]))
    assert found(problems) == [("a", f"carrier on {P0A}", "up", "node"), ("a", f"carrier on {P0B}", "up", "node")]
    assert problems[0].fix == "is the cable in port 0? set qsfp_ports = [0, 1] in group_data"
    # ... whatever carrier is required: it is not about the rails' link.
    assert len(compare({"a": node(links=both), "b": node()}, carrier_required="any")) == 2


def test_each_node_is_judged_by_its_own_rails():
    facts = {"a": node(links={P0A: "up", P0B: "up", P1A: "down", P1B: "down"}), "b": node()}
    assert compare(facts, rails={"a": rails([0]), "b": rails([1])}) == []
    assert {p.node for p in compare(facts, rails={"a": rails([1]), "b": rails([0])})} == {"a", "b"}


def test_unknown_carrier_on_a_fresh_node_is_not_a_fault():
    fresh = {P0A: "unknown", P0B: "unknown", P1A: "unknown", P1B: "unknown"}
    assert compare({"a": node(links=fresh), "b": node()}, carrier_required="all") == []


def test_missing_rail_fails_the_node():
    problems = compare({"a": node(links={P1B: "absent"}), "b": node(links={P0A: "absent"})})
    assert found(problems) == [("a", f"QSFP netdev {P1B}", "absent", "node")], "only the rails must exist"
    assert problems[0].message.startswith(f"a: QSFP netdev {P1B} is absent, expected present; is this a DGX Spark?")


def test_rdma_device_is_checked_on_the_rails_only():
    problems = compare({"a": node(rdma={P0A: NO_RDMA, P1A: NO_RDMA}), "b": node(rdma={P1B: "rxe1"})})
    assert found(problems) == [("a", f"RDMA device on rail {P1A}", "none", "node"),
                               ("b", f"RDMA device on rail {P1B}", "rxe1", "warning")]
    assert problems[1].message == (
        f"b: RDMA device on rail {P1B} is rxe1, expected roceP2p1s0f1 (DGX OS's name); the RoCE detector finds "
        "rxe1 from sysfs by itself; a pinned nccl_ib_hca must name rxe1")


ADMIN = "nvidia"


@pytest.mark.parametrize("admin, message", [
    (False, "a: admin account 'nvidia' is missing, expected present; create it (the same admin account on every "
            "node), or set ssh_user to the one this node has"),
    ({"home": "/home/nvidia", "owner": "missing"},
     "a: home of 'nvidia' (/home/nvidia) is missing, expected a directory; create it: sudo mkhomedir_helper nvidia"),
    ({"home": "/home/nvidia", "owner": "root"},
     "a: home of 'nvidia' (/home/nvidia) is owned by root, expected owned by nvidia; give it back: "
     "sudo chown nvidia: /home/nvidia"),
])
def test_an_admin_account_that_cannot_hold_the_caches_fails_its_node(admin, message):
    problems = compare({"a": {**node(), "admin": admin}, "b": {**node(), "admin": {"home": "/home/nvidia",
                                                                                   "owner": ADMIN}}},
                       admin_user=ADMIN)
    assert [(p.node, p.kind, p.message) for p in problems] == [("a", "node", message)]


def test_low_disk_fails_the_node():
    problems = compare({"a": node(disk=120.5), "b": node()}, min_disk_gib=200)
    assert len(problems) == 1
    assert problems[0].node == "a" and problems[0].kind == "node"
    assert "120.5 GiB" in problems[0].message and "200" in problems[0].message


def test_nodes_without_facts_are_skipped():
    assert compare({"a": node(kernel="k1"), "b": None}) == []


def test_summary_line_is_one_line_per_node():
    facts = node()
    problems = compare({"a": facts, "b": node(kernel="other")})
    line = summary_line("a", facts, problems)
    assert "\n" not in line
    assert line.startswith("preflight a: kernel 6.17.0-1014-nvidia, driver 580.142")
    assert "kernel is 6.17.0-1014-nvidia" in line
    assert summary_line("c", None, []).startswith("preflight c: not connected")
    assert summary_line("a", facts, []).endswith("-> OK")
    assert f"qsfp {P0A}=down/rocep1s0f0 {P0B}=down/roceP2p1s0f0 {P1A}=up/rocep1s0f1" in line


def test_summary_line_tells_warnings_apart():
    facts = node(rdma={P1A: "mlx5_2"})
    line = summary_line("a", facts, compare({"a": facts}))
    assert line.endswith(f"-> warning: a: RDMA device on rail {P1A} is mlx5_2, expected rocep1s0f1 (DGX OS's name); "
                         "the RoCE detector finds mlx5_2 from sysfs by itself; a pinned nccl_ib_hca must name mlx5_2")


@pytest.mark.parametrize("nccl, world_size, warned", [
    ("2.28.9-1", 4, True),     # wedged at TP=4 (field report: DeepSeek V4 Flash on 4 Sparks, TP=4)
    ("2.28.9", 2, False),      # TP=2 was not affected
    ("2.30.4-1", 4, False),
    ("2.31.0", 4, False),
    (None, 4, False),          # unknown: reported as "?", no guess
    ("custom", 4, False),
])
def test_nccl_warning(nccl, world_size, warned):
    warning = nccl_warning("spark-1", nccl, world_size)
    assert (warning is not None) is warned
    if warned:
        assert "NCCL 2.28.9" in warning and ">= 2.30.4" in warning and "tensor parallel 4" in warning
