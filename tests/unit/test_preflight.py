"""Preflight's pure parts: reading a node's inventory and comparing the nodes."""

import os
import pwd
import shutil
import subprocess

import pytest

from roles.preflight.compare import compare_nodes, nccl_warning, summary_line
from roles.preflight.facts import NO_DRIVER, NODE_INVENTORY, NodeInventory, driver_version, parse_node_inventory

IFACES = ["enp1s0f0np0", "enp1s0f1np1"]


def node(kernel="6.17.0-1014-nvidia", driver="580.142", image="sha256:aaa", links=("up", "up"), disk=500.0):
    return {
        "kernel": kernel,
        "driver": driver,
        "image_id": image,
        "carriers": dict(zip(IFACES, links)),
        "disk_path": "/home/nvidia",
        "disk_free_gib": disk,
    }


def compare(facts, **kwargs):
    kwargs.setdefault("qsfp_interfaces", IFACES)
    kwargs.setdefault("min_disk_gib", 200)
    return compare_nodes(facts, **kwargs)


# --- the fact -------------------------------------------------------------------

def test_parse_a_real_spark():
    lines = [
        "kernel=6.17.0-1014-nvidia",
        "driver_proc=NVRM version: NVIDIA UNIX Open Kernel Module for aarch64  580.142  Release Build  "
        "(dvs-builder@U16-I3-B03-4-3)  Thu Sep 25 2025",
        "driver_smi=580.142",
        "image_id=sha256:0123456789abcdef",
        "nccl=2.30.4-1",
        "carrier.enp1s0f0np0=1",
        "carrier.enp1s0f1np1=0",
        "disk_path=/home/nvidia",
        "disk_avail_kib=3145728000",
    ]
    assert parse_node_inventory(lines) == {
        "kernel": "6.17.0-1014-nvidia",
        "driver": "580.142",
        "image_id": "sha256:0123456789abcdef",
        "nccl": "2.30.4-1",
        "carriers": {"enp1s0f0np0": "up", "enp1s0f1np1": "down"},
        "disk_path": "/home/nvidia",
        "disk_free_gib": 3000.0,
    }


def test_parse_a_lab_vm_without_gpu_docker_or_configured_ports():
    lines = [
        "kernel=6.8.0-51-generic",
        "carrier.enp1s0f0np0=unknown",
        "carrier.enp1s0f1np1=absent",
        "disk_path=/home/spark",
        "disk_avail_kib=",
    ]
    facts = parse_node_inventory(lines)
    assert facts["driver"] == NO_DRIVER
    assert facts["image_id"] is None
    assert facts["carriers"] == {"enp1s0f0np0": "unknown", "enp1s0f1np1": "absent"}
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
TOOLS = ("sh", "uname", "head", "getent", "cut", "df", "awk", "cat", "sed")
# docker: its arguments one per line in $STUBS/docker_args, then what
# `docker image inspect --format` prints for an NGC image.
FAKE_DOCKER = f"""#!/bin/sh
printf '%s\\n' "$@" > "$STUBS/docker_args"
printf 'image_id={IMAGE_ID}\\nenv.PATH=/usr/local/bin\\nenv.NCCL_VERSION=2.30.4-1\\n'
"""
FAKE_NVIDIA_SMI = """#!/bin/sh
[ "$*" = "--query-gpu=driver_version --format=csv,noheader" ] && echo 580.95.05
"""


class FakeNode:
    """A temp sysfs (one port with carrier, one administratively down) and /proc,
    and a PATH of the script's tools plus the stubs asked for."""

    def __init__(self, root, banner=BANNER, docker=True, nvidia_smi=True):
        self.root, self.stubs = root, root / "stubs"
        (root / "sys/class/net/enp1s0f0np0").mkdir(parents=True)
        (root / "sys/class/net/enp1s0f0np0/carrier").write_text("1\n")
        (root / "sys/class/net/enp1s0f1np1").mkdir()  # carrier unreadable while the port is down
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

    def inventory(self, user, image, interfaces=IFACES):
        result = self.run(["sh", str(NODE_INVENTORY), user, image, *interfaces])
        assert (result.returncode, result.stderr) == (0, "")
        return result.stdout.splitlines()

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
        "carriers": {"enp1s0f0np0": "up", "enp1s0f1np1": "unknown"},
        "disk_path": me.pw_dir,
    }


def test_inventory_script_on_a_node_without_driver_docker_or_admin(tmp_path):
    node = FakeNode(tmp_path, banner=None, docker=False, nvidia_smi=False)
    facts = parse_node_inventory(node.inventory("spark-cluster-nobody", "vllm:latest", [*IFACES, "enp2s0"]))
    assert (facts["driver"], facts["image_id"], facts["nccl"]) == (NO_DRIVER, None, None)
    assert facts["carriers"]["enp2s0"] == "absent"
    assert facts["disk_path"] == "/", "no home: the root filesystem's free space"
    assert facts["disk_free_gib"] is not None


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
    command = NodeInventory().command(IFACES, "vllm:x;rm -rf /", "")
    assert command.startswith("sh -c ") and command.endswith(
        " node_inventory.sh root 'vllm:x;rm -rf /' enp1s0f0np0 enp1s0f1np1"
    ), "no admin named: root's home"
    node = FakeNode(tmp_path)
    result = node.run(["sh", "-c", command])
    assert (result.returncode, result.stderr) == (0, "")

    def steady(lines):  # free space moves between two runs on a busy disk
        return [line.split("=")[0] if line.startswith("disk_avail_kib=") else line for line in lines]

    assert steady(result.stdout.splitlines()) == steady(node.inventory("root", "vllm:x;rm -rf /"))
    assert node.docker_args()[-1] == "vllm:x;rm -rf /"


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


def test_link_down_on_every_port_fails_the_node():
    problems = compare({"a": node(), "b": node(links=("down", "down"))})
    assert {(p.node, p.field, p.kind) for p in problems} == {
        ("b", "QSFP link enp1s0f0np0", "node"),
        ("b", "QSFP link enp1s0f1np1", "node"),
    }


def test_one_cable_is_enough_unless_all_are_required():
    facts = {"a": node(links=("up", "down")), "b": node(links=("up", "down"))}
    assert compare(facts) == []
    assert [p.node for p in compare(facts, carrier_required="all")] == ["a", "b"]


def test_unknown_carrier_on_a_fresh_node_is_not_a_fault():
    assert compare({"a": node(links=("unknown", "unknown")), "b": node()}) == []


def test_missing_interface_fails_the_node():
    problems = compare({"a": node(links=("up", "absent")), "b": node()})
    assert [(p.node, p.field, p.found) for p in problems] == [("a", "QSFP interface enp1s0f1np1", "absent")]


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
