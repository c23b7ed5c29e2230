"""roles/rdma: the RoCE detector on sysfs fixtures (module, CLI, and as the
deploy's fact), settings, the serving unit's command, and the operations the
role builds (offline against fake facts: nothing connects anywhere)."""

import ast
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from collect_ops import build_operations
from spark_sysfs import detector, lab_rxe_bond, spark, spark_bond
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.server import KernelModules

import roles.rdma as rdma
from roles.rdma.facts import DETECTOR_SOURCE, InfinibandNodes, RoceState
from roles.rdma.settings import detector_args, rdma_settings, roce_env_argv, roce_env_command
from spark_cluster.settings import SettingError

FIXTURES = Path(__file__).parent / "fixtures" / "sysfs"
SLAVES = "enp1s0f0np0,enp1s0f1np1"
# bond mode: bond0 over both halves of the cabled port (spark_cluster/fabric.py).
HOST_DATA = {"qsfp_ip": "10.0.0.1", "qsfp_prefixlen": 24, "network_mode": "bond"}
# dual_subnet mode (the default): one rail per half of port 1, .100/24 and .101/24.
RAILS_DATA = {"qsfp_ip": "192.168.100.10", "qsfp_prefixlen": 24}
RAILS = {"enp1s0f1np1": "192.168.100.10", "enP2p1s0f1np1": "192.168.101.10"}


def detect(fixture, **kwargs):
    kwargs.setdefault("slaves", SLAVES.split(","))
    return detector.detect(str(FIXTURES / fixture), "bond0", **kwargs)


def cli(*args, python=sys.executable):
    return subprocess.run([python, str(DETECTOR_SOURCE), *args], capture_output=True, text=True, timeout=30)


# --- detection on fixtures ----------------------------------------------------

def test_cx7_picks_the_bonded_functions_and_gid_index_3():
    result = detect("cx7-bond", ip="10.0.0.1")
    assert result["problem"] is None
    assert result["hcas"] == ["rocep1s0f0", "rocep1s0f1"]
    assert result["gid_index"] == 3 and result["port"] == 1
    assert result["gids"] == {
        "rocep1s0f0": "0000:0000:0000:0000:0000:ffff:0a00:0001",
        "rocep1s0f1": "0000:0000:0000:0000:0000:ffff:0a00:0001",
    }
    # the second PCIe function's devices (roceP2...) are not on the bond
    assert [device["name"] for device in result["devices"]] == ["rocep1s0f0", "rocep1s0f1"]


def test_cx7_slaves_are_found_from_the_bond_itself():
    assert detect("cx7-bond", slaves=())["hcas"] == ["rocep1s0f0", "rocep1s0f1"]


def test_soft_roce_answers_gid_index_1():
    result = detect("rxe-bond", ip="10.0.0.1")
    assert result["problem"] is None
    assert result["hcas"] == ["rocep1s0f0", "rocep1s0f1"] and result["gid_index"] == 1


def test_a_device_bound_to_the_bond_itself_is_preferred_over_slave_devices(tmp_path):
    # The lab moves one soft-RoCE device onto bond0 (an rxe on a slave cannot
    # receive); a RoCE LAG device on real hardware looks the same.
    tree = lab_rxe_bond(tmp_path / "sys", slaves=("enp1s0f0np0", "enp1s0f1np1"))
    (tree.ib("rocep1s0f0") / "parent").write_text("enp1s0f0np0\n")
    (tree.ib("rocep1s0f1") / "parent").write_text("bond0\n")
    result = detector.detect(str(tree), "bond0", ip="10.0.0.1")
    assert result["problem"] is None
    assert result["hcas"] == ["rocep1s0f1"] and result["gid_index"] == 1


def test_another_nodes_address_is_not_accepted():
    result = detect("cx7-bond", ip="10.0.0.2")
    assert result["problem"] == "no_ipv4_gid"
    assert result["message"] == "no RoCE v2 IPv4 GID for 10.0.0.2 on rocep1s0f0/rocep1s0f1 (is bond0 up with its address?)"


def test_fresh_spark_has_devices_but_no_ipv4_gid_yet():
    result = detect("cx7-fresh")
    assert result["problem"] == "no_ipv4_gid"
    assert [device["name"] for device in result["devices"]] == ["rocep1s0f0", "rocep1s0f1"]


def test_no_device_names_the_qsfp_interfaces():
    result = detect("no-device")
    assert result["problem"] == "no_device"
    assert result["message"] == "no RoCE device on enp1s0f0np0/enp1s0f1np1 (rdma link / ibv_devices show none)"


def test_other_ports_devices_do_not_count():
    result = detector.detect(str(FIXTURES / "cx7-bond"), "enP2p1s0f1np1")
    assert [device["name"] for device in result["devices"]] == ["roceP2p1s0f1"]
    assert result["problem"] == "no_ipv4_gid"


def test_down_port_is_reported_as_such(tmp_path):
    tree = spark_bond(tmp_path / "sys")
    for device in ("rocep1s0f1", "roceP2p1s0f1"):
        tree.set_state(device, "1: DOWN")
    result = detector.detect(str(tree), "bond0")
    assert result["problem"] == "port_down" and "no port is ACTIVE" in result["message"]


def test_hcas_tied_on_the_index_keep_the_lower_one(tmp_path):
    tree = spark_bond(tmp_path / "sys")
    tree.move_gid("roceP2p1s0f1", 3, 5)
    result = detector.detect(str(tree), "bond0")
    assert result["gid_index"] == 3 and result["hcas"] == ["rocep1s0f1"]


def test_hcas_disagreeing_on_the_index_keep_the_majority(tmp_path):
    # Two HCAs at index 5 against one at 3: the majority wins even though the
    # tie-break (the lower index) would pick 3.
    tree = spark_bond(tmp_path / "sys", slaves=("enp1s0f0np0", "enp1s0f1np1", "enP2p1s0f1np1"))
    for device in ("rocep1s0f1", "roceP2p1s0f1"):
        tree.move_gid(device, 3, 5)
    result = detector.detect(str(tree), "bond0")
    assert [device["name"] for device in result["devices"]] == ["roceP2p1s0f1", "rocep1s0f0", "rocep1s0f1"]
    assert result["gid_index"] == 5 and result["hcas"] == ["roceP2p1s0f1", "rocep1s0f1"]


def test_pinned_values_win():
    result = detect("cx7-bond", hca="rocep1s0f1", gid_index=None)
    assert result["hcas"] == ["rocep1s0f1"] and result["gid_index"] == 3
    assert detect("cx7-bond", gid_index=2)["gid_index"] == 2
    both = detect("no-device", hca="mlx5_0:1", gid_index=3)
    assert (both["hcas"], both["gid_index"], both["problem"]) == (["mlx5_0:1"], 3, None)
    missing = detect("cx7-bond", hca="mlx5_9")
    assert missing["problem"] == "no_device" and "mlx5_9" in missing["message"]


# --- the command line -----------------------------------------------------------

def test_env_output_is_what_nccl_and_docker_read():
    result = cli("--sysfs", str(FIXTURES / "cx7-bond"), "--netdev", "bond0", "--env")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "NCCL_IB_HCA=rocep1s0f0,rocep1s0f1\nNCCL_IB_GID_INDEX=3\n"


def test_json_output():
    result = cli("--sysfs", str(FIXTURES / "rxe-bond"), "--netdev", "bond0", "--ip", "10.0.0.1", "--json")
    data = json.loads(result.stdout)
    assert (data["hcas"], data["gid_index"], data["port"]) == (["rocep1s0f0", "rocep1s0f1"], 1, 1)
    assert set(data["gids"]) == {"rocep1s0f0", "rocep1s0f1"}


@pytest.mark.parametrize(
    "fixture, message",
    [
        ("no-device", "roce_detect: no RoCE device on enp1s0f0np0/enp1s0f1np1 (rdma link / ibv_devices show none)\n"),
        ("cx7-fresh", "roce_detect: no RoCE v2 IPv4 GID on rocep1s0f0/rocep1s0f1 (is bond0 up with its address?)\n"),
    ],
)
def test_nothing_found_exits_2_with_one_line(fixture, message):
    result = cli("--sysfs", str(FIXTURES / fixture), "--netdev", "bond0", "--slaves", SLAVES, "--env")
    assert result.returncode == 2 and result.stdout == "" and result.stderr == message


def test_report_mode_never_fails():
    result = cli("--sysfs", str(FIXTURES / "no-device"), "--netdev", "bond0", "--slaves", SLAVES, "--report")
    assert result.returncode == 0 and json.loads(result.stdout)["problem"] == "no_device"


def test_wait_is_bounded():
    result = cli("--sysfs", str(FIXTURES / "cx7-fresh"), "--slaves", SLAVES, "--wait", "1")
    assert result.returncode == 2


def test_output_file_is_private_and_atomic(tmp_path):
    target = tmp_path / "run" / "spark-cluster" / "roce.env"
    result = cli("--sysfs", str(FIXTURES / "cx7-bond"), "--env", "--output", str(target))
    assert result.returncode == 0 and result.stdout == ""
    assert target.read_text() == "NCCL_IB_HCA=rocep1s0f0,rocep1s0f1\nNCCL_IB_GID_INDEX=3\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert os.listdir(target.parent) == ["roce.env"]


def test_detector_imports_only_the_standard_library():
    tree = ast.parse(DETECTOR_SOURCE.read_text())
    imports = {alias.name.split(".")[0] for node in ast.walk(tree)
               if isinstance(node, ast.Import) for alias in node.names}
    imports |= {node.module.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.module}
    assert imports <= set(sys.stdlib_module_names)


VERMIN = Path(sys.executable).with_name("vermin")
# Members of builtin types newer than 3.8. vermin reports them only where it
# can tell the receiver's type ("x".removeprefix), not on a plain variable
# (entry.removeprefix), which is how a sysfs parser would write them.
NEWER_BUILTIN_MEMBERS = {"removeprefix": "3.9", "removesuffix": "3.9", "bit_count": "3.10"}


def python38_violations(path):
    """What in a source file needs a Python newer than 3.8 (empty: none found)."""
    result = subprocess.run(
        [str(VERMIN), "--no-config-file", "--no-tips", "--violations", "-t=3.8-", str(path)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode in (0, 1), result.stdout + result.stderr
    found = []
    if result.returncode == 1:  # a target not met: the lines that say why, else all it said
        found = [line.strip() for line in result.stdout.splitlines() if "requires" in line] or [result.stdout]
    for node in ast.walk(ast.parse(Path(path).read_text())):
        if isinstance(node, ast.Attribute) and node.attr in NEWER_BUILTIN_MEMBERS:
            found.append(f"line {node.lineno}: .{node.attr} requires {NEWER_BUILTIN_MEMBERS[node.attr]}")
    return found


def test_detector_needs_nothing_newer_than_python38():
    # Its docstring promises Python 3.8: every node runs it with its own python3.
    assert python38_violations(DETECTOR_SOURCE) == []


@pytest.mark.parametrize(
    "original, newer, needs",
    [
        ('entry[len("lower_"):]', 'entry.removeprefix("lower_")', ".removeprefix requires 3.9"),
        ('ROCE_V2 = "roce v2"', 'ROCE_V2 = "xroce v2".removeprefix("x")', "'str.removeprefix' member requires !2, 3.9"),
        ('"pinned": {"hca": None, "gid_index": None},', '"pinned": {"hca": None} | {"gid_index": None},',
         "dict union (dict | dict) requires !2, 3.9"),
        ("int(name) for name in names if", "int(name) for name, _ in zip(names, names, strict=True) if",
         "'zip(strict)' requires !2, 3.10"),
    ],
)
def test_python38_check_catches_newer_calls(tmp_path, original, newer, needs):
    source = DETECTOR_SOURCE.read_text()
    assert source.count(original) == 1, original
    copy = tmp_path / "roce_detect.py"
    copy.write_text(source.replace(original, newer))
    violations = python38_violations(copy)
    assert any(needs in line for line in violations), violations


# --- the fact runs the same source ----------------------------------------------

@pytest.mark.parametrize("fixture, problem", [("cx7-bond", None), ("no-device", "no_device"), ("cx7-fresh", "no_ipv4_gid")])
def test_fact_command_runs_the_detector_source(fixture, problem):
    fact = RoceState()
    command = fact.command(args=["--netdev", "bond0", "--slaves", SLAVES, "--sysfs", str(FIXTURES / fixture)])
    assert command.startswith("python3 -c ")
    result = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert fact.process(result.stdout.splitlines())["problem"] == problem


# --- settings and the serving unit's command --------------------------------------

@pytest.mark.parametrize(
    "changes, message",
    [
        ({"nccl_ib_hca": "rocep1s0f0;rm -rf /"}, "'nccl_ib_hca' must be 'auto' or RDMA device names"),
        ({"nccl_ib_gid_index": "3"}, "'nccl_ib_gid_index' must be 'auto' or an integer from 0 to 255"),
        ({"nccl_ib_gid_index": 300}, "'nccl_ib_gid_index' must be 'auto'"),
        ({"roce_gid_wait_s": -1}, "'roce_gid_wait_s' must be an integer of at least 0"),
    ],
)
def test_bad_group_data_names_the_key(changes, message):
    with pytest.raises(SettingError) as error:
        rdma_settings({**HOST_DATA, **changes})
    assert message in str(error.value) and "\n" not in str(error.value)


def test_serving_command_writes_the_env_file_with_auto_values():
    assert roce_env_command(HOST_DATA) == (
        "/usr/bin/python3 /usr/local/lib/spark-cluster/roce_detect.py --netdev bond0 "
        "--slaves enp1s0f1np1,enP2p1s0f1np1 --ip 10.0.0.1 --wait 60 --env --output /run/spark-cluster/roce.env"
    )


def test_serving_command_in_dual_subnet_mode_names_every_rail():
    assert roce_env_command(RAILS_DATA) == (
        "/usr/bin/python3 /usr/local/lib/spark-cluster/roce_detect.py "
        "--rails enp1s0f1np1=192.168.100.10,enP2p1s0f1np1=192.168.101.10 "
        "--wait 60 --env --output /run/spark-cluster/roce.env"
    )


@pytest.mark.parametrize("host_data, build, env", [
    (RAILS_DATA, lambda root: spark(root, RAILS), "NCCL_IB_HCA=rocep1s0f1,roceP2p1s0f1\nNCCL_IB_GID_INDEX=3\n"),
    (HOST_DATA, lambda root: spark_bond(root), "NCCL_IB_HCA=roceP2p1s0f1,rocep1s0f1\nNCCL_IB_GID_INDEX=3\n"),
    (HOST_DATA, lambda root: lab_rxe_bond(root), "NCCL_IB_HCA=rocep1s0f1\nNCCL_IB_GID_INDEX=1\n"),
])
def test_the_settings_arguments_find_the_hcas_on_a_spark(tmp_path, host_data, build, env):
    # What the serving unit runs, pointed at a Spark-shaped /sys: the seam
    # between the settings (which netdevs, which addresses) and the detector.
    tree = build(tmp_path / "sys")
    result = cli(*detector_args(rdma_settings(host_data)), "--sysfs", str(tree), "--env")
    assert (result.returncode, result.stdout, result.stderr) == (0, env, "")


def test_serving_argv_is_the_same_command_unquoted():
    argv = roce_env_argv(HOST_DATA)
    assert argv[:2] == ["/usr/bin/python3", "/usr/local/lib/spark-cluster/roce_detect.py"]
    assert " ".join(argv) == roce_env_command(HOST_DATA)


def test_serving_command_honours_pinned_values():
    command = roce_env_command({**HOST_DATA, "nccl_ib_hca": ["rocep1s0f0", "rocep1s0f1"], "nccl_ib_gid_index": 3})
    assert "--hca rocep1s0f0,rocep1s0f1 --gid-index 3" in command


def test_pinned_values_reach_the_detector_cli(tmp_path):
    s = rdma_settings({**HOST_DATA, "nccl_ib_hca": "mlx5_0", "nccl_ib_gid_index": 7})
    result = cli(*detector_args(s), "--sysfs", str(FIXTURES / "no-device"), "--env")
    assert result.stdout == "NCCL_IB_HCA=mlx5_0\nNCCL_IB_GID_INDEX=7\n"


# --- operations, built offline against fake facts ---------------------------------




def roce(fixture):
    return detect(fixture, ip="10.0.0.1")


INSTALLED = {
    DebPackages: {name: ["1"] for name in ("rdma-core", "ibverbs-utils", "perftest")},
    InfinibandNodes: ["rdma_cm", "uverbs0", "uverbs1"],
    KernelModules: {"ib_uverbs": {}},
}


def converged_files():
    files = Path(rdma.FILES)
    remote = {dest: ((files / name).read_text(), 644) for dest, name in rdma.MEMLOCK_FILES.items()}
    remote[rdma.DOCKER_MEMLOCK_DROPIN] = ((files / "90-spark-cluster-memlock-docker.conf").read_text(), 644)
    remote["/usr/local/lib/spark-cluster/roce_detect.py"] = (DETECTOR_SOURCE.read_text(), 755)
    return remote


def test_missing_roce_device_fails_the_host_first():
    ops = build_operations(rdma.apply, HOST_DATA, {RoceState: roce("no-device"), **INSTALLED})
    assert [name for name, _, _ in ops] == ["Check the RoCE devices"]
    result = subprocess.run(["sh", "-c", ops[0][1][0]], capture_output=True, text=True, timeout=10)
    assert result.returncode == 1
    assert result.stderr == "spark-1: no RoCE device on enp1s0f0np0/enp1s0f1np1 (rdma link / ibv_devices show none)\n"


def test_first_run_installs_and_checks_the_gid_after_the_network_role():
    ops = build_operations(rdma.apply, HOST_DATA, {
        RoceState: roce("cx7-fresh"), DebPackages: {}, InfinibandNodes: [], KernelModules: {},
    })
    names = [name for name, _, _ in ops]
    assert names == [
        "Install the RDMA tools",
        "Directory for the RoCE detector",
        "Install the RoCE detector",
        "Load ib_uverbs",
        "Load ib_uverbs at boot",
        "Check /dev/infiniband/uverbs*",
        "Unlimited memlock: /etc/security/limits.d/90-spark-cluster-memlock.conf",
        "Unlimited memlock: /etc/systemd/system.conf.d/90-spark-cluster-memlock.conf",
        "Unlimited memlock for dockerd",
        "Reload systemd for the memlock settings",
        "Restart docker with unlimited memlock",
        "Check the RoCE v2 IPv4 GIDs now that the QSFP links have their addresses",
    ]
    commands = dict((name, commands) for name, commands, _ in ops)
    assert commands["Install the RoCE detector"][-1] == "chmod 755 /usr/local/lib/spark-cluster/roce_detect.py"
    assert commands["Check the RoCE v2 IPv4 GIDs now that the QSFP links have their addresses"] == [
        "python3 /usr/local/lib/spark-cluster/roce_detect.py --netdev bond0 --slaves enp1s0f1np1,enP2p1s0f1np1 "
        "--ip 10.0.0.1 --wait 10 --json >/dev/null"
    ]
    assert commands["Reload systemd for the memlock settings"] == ["systemctl daemon-reload"]
    conditional = {name for name, _, condition in ops if condition}
    assert conditional == {"Reload systemd for the memlock settings", "Restart docker with unlimited memlock"}


def test_converged_node_yields_no_command_at_all():
    ops = build_operations(rdma.apply, HOST_DATA, {RoceState: roce("cx7-bond"), **INSTALLED}, converged_files())
    for name, commands, condition in ops:
        assert commands == [] or condition, (name, commands)
    assert "Check the RoCE v2 IPv4 GIDs now that the QSFP links have their addresses" not in [name for name, _, _ in ops]
    assert "Load ib_uverbs" not in [name for name, _, _ in ops]


def test_pinned_gid_index_skips_the_gid_check():
    data = {**HOST_DATA, "nccl_ib_gid_index": 3}
    ops = build_operations(rdma.apply, data, {RoceState: roce("cx7-fresh"), **INSTALLED}, converged_files())
    assert not any(name.startswith("Check the RoCE v2") for name, _, _ in ops)
