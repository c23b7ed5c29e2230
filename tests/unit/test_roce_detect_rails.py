"""roles/rdma/files/roce_detect.py on Spark-shaped sysfs trees (spark_sysfs):
rails (one PCIe half per rail, each on its own subnet: dual_subnet mode) and
the bond form beside them. Each case runs through the detect functions and
through main(), the command line the serving unit and the deploy's fact run."""

import json
import os
import stat
import subprocess
import sys
from types import SimpleNamespace

import pytest
from spark_sysfs import (DEVICE_OF, ROCE_V2, SparkSysfs, detector, lab_rxe_bond, lab_rxe_rails, mapped, spark,
                         spark_bond)

from roles.rdma.facts import DETECTOR_SOURCE

# NVIDIA's playbook layout: port 1's two halves on 192.168.100/24 and .101/24.
PORT1 = {"enp1s0f1np1": "192.168.100.10", "enP2p1s0f1np1": "192.168.101.10"}
# Both ports cabled: four rails, four subnets (rail order: port 0 then port 1, half 0 then 1).
FOUR = {"enp1s0f0np0": "192.168.100.10", "enP2p1s0f0np0": "192.168.101.10",
        "enp1s0f1np1": "192.168.102.10", "enP2p1s0f1np1": "192.168.103.10"}


def rails_arg(addresses):
    return ",".join("%s=%s" % pair for pair in addresses.items())


def run(capsys, *argv):
    """main() as the command line runs it: (exit status, stdout, stderr)."""
    code = detector.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def port1(tmp_path):
    return spark(tmp_path / "sys", PORT1, cabled=(1,))


# --- rails -------------------------------------------------------------------------------

def test_one_cable_both_halves_of_port_1_give_both_hcas_at_index_3(port1, capsys):
    result = detector.detect_rails(str(port1), list(PORT1.items()))
    assert result["problem"] is None
    assert result["hcas"] == ["rocep1s0f1", "roceP2p1s0f1"]
    assert result["gid_index"] == 3 and result["gid_note"] is None and result["port"] == 1
    assert result["rails"] == [
        {"netdev": "enp1s0f1np1", "ip": "192.168.100.10", "device": "rocep1s0f1", "gid_index": 3,
         "gid": mapped("192.168.100.10"), "port": 1, "state": "ACTIVE"},
        {"netdev": "enP2p1s0f1np1", "ip": "192.168.101.10", "device": "roceP2p1s0f1", "gid_index": 3,
         "gid": mapped("192.168.101.10"), "port": 1, "state": "ACTIVE"},
    ]
    assert result["gids"] == {"rocep1s0f1": mapped("192.168.100.10"), "roceP2p1s0f1": mapped("192.168.101.10")}

    code, out, err = run(capsys, "--sysfs", str(port1), "--rails", rails_arg(PORT1), "--env")
    assert (code, out, err) == (0, "NCCL_IB_HCA=rocep1s0f1,roceP2p1s0f1\nNCCL_IB_GID_INDEX=3\n", "")


def test_both_ports_cabled_give_four_hcas_in_rail_order(tmp_path, capsys):
    tree = spark(tmp_path / "sys", FOUR, cabled=(0, 1))
    result = detector.detect_rails(str(tree), list(FOUR.items()))
    assert result["problem"] is None and result["gid_index"] == 3
    assert result["hcas"] == ["rocep1s0f0", "roceP2p1s0f0", "rocep1s0f1", "roceP2p1s0f1"]
    assert [rail["gid"] for rail in result["rails"]] == [mapped(ip) for ip in FOUR.values()]
    code, out, _ = run(capsys, "--sysfs", str(tree), "--rails", rails_arg(FOUR), "--json")
    data = json.loads(out)
    assert code == 0 and data["hcas"] == result["hcas"] and data["rails"] == result["rails"]


def test_rails_keep_the_order_they_are_given_in(port1):
    backwards = list(reversed(list(PORT1.items())))
    result = detector.detect_rails(str(port1), backwards)
    assert result["hcas"] == ["roceP2p1s0f1", "rocep1s0f1"]
    assert [rail["netdev"] for rail in result["rails"]] == ["enP2p1s0f1np1", "enp1s0f1np1"]


def test_device_net_as_symlinks_like_a_real_node(tmp_path):
    tree = spark(tmp_path / "sys", PORT1, symlink=True)
    assert os.path.islink(str(tree.ib("rocep1s0f1") / "device/net/enp1s0f1np1"))
    assert detector.detect_rails(str(tree), list(PORT1.items()))["hcas"] == ["rocep1s0f1", "roceP2p1s0f1"]


def test_soft_roce_rails_answer_index_1(tmp_path):
    tree = lab_rxe_rails(tmp_path / "sys", PORT1)
    result = detector.detect_rails(str(tree), list(PORT1.items()))
    assert result["problem"] is None
    assert result["hcas"] == ["rocep1s0f1", "roceP2p1s0f1"] and result["gid_index"] == 1


def test_a_rail_only_takes_the_gid_of_its_own_address(port1):
    # The first half's GID is for .100.10; asking that rail for .101.10 finds nothing.
    result = detector.detect_rails(str(port1), [("enp1s0f1np1", "192.168.101.10")])
    assert result["problem"] == "no_ipv4_gid"


def test_a_gid_owned_by_another_netdev_is_not_the_rails(port1):
    # A VLAN on the rail (enp1s0f1np1.100) with the rail's address at a lower index.
    port1.clear_gid("rocep1s0f1", 3)
    port1.set_gid("rocep1s0f1", 3, mapped("192.168.100.10"), ROCE_V2, "enp1s0f1np1.100")
    result = detector.detect_rails(str(port1), list(PORT1.items()))
    assert result["problem"] == "no_ipv4_gid" and "rail enp1s0f1np1" in result["message"]


def test_a_half_with_link_but_no_ipv4_gid_is_refused_with_one_line(tmp_path, capsys):
    # Both halves cabled and up; only the first has its address (and so its GID).
    tree = spark(tmp_path / "sys", {"enp1s0f1np1": "192.168.100.10"}, cabled=(1,))
    result = detector.detect_rails(str(tree), list(PORT1.items()))
    message = ("no RoCE v2 IPv4 GID for 192.168.101.10 on roceP2p1s0f1 "
               "(is rail enP2p1s0f1np1 up with its address?)")
    assert (result["problem"], result["message"]) == ("no_ipv4_gid", message)
    assert result["hcas"] == [] and result["gid_index"] is None
    assert result["rails"][1]["device"] == "roceP2p1s0f1" and result["rails"][1]["gid_index"] is None

    code, out, err = run(capsys, "--sysfs", str(tree), "--rails", rails_arg(PORT1), "--env")
    assert (code, out, err) == (detector.EXIT_NOT_FOUND, "", "roce_detect: %s\n" % message)
    code, out, _ = run(capsys, "--sysfs", str(tree), "--rails", rails_arg(PORT1), "--report")
    assert code == 0 and json.loads(out)["problem"] == "no_ipv4_gid"


def test_a_half_without_link_is_port_down(tmp_path):
    # Port 0 addressed as well, but its cable is in port 1 only: carrier 0, port DOWN.
    tree = spark(tmp_path / "sys", FOUR, cabled=(1,))
    result = detector.detect_rails(str(tree), list(FOUR.items()))
    assert result["problem"] == "port_down"
    assert result["message"] == (
        "rail enp1s0f0np0 (rocep1s0f0, 192.168.100.10) has no link: carrier 0, port DOWN (cable? link?); "
        "rail enP2p1s0f0np0 (roceP2p1s0f0, 192.168.101.10) has no link: carrier 0, port DOWN (cable? link?)")


@pytest.mark.parametrize("carrier, state", [(0, "4: ACTIVE"), (1, "1: DOWN")])
def test_either_no_carrier_or_a_down_port_is_no_link(port1, carrier, state):
    port1.set_carrier("enP2p1s0f1np1", carrier)
    port1.set_state("roceP2p1s0f1", state)
    result = detector.detect_rails(str(port1), list(PORT1.items()))
    assert result["problem"] == "port_down" and result["message"].startswith("rail enP2p1s0f1np1 (roceP2p1s0f1")


def test_an_unreadable_carrier_is_not_taken_for_no_link(port1):
    port1.netdev("enP2p1s0f1np1", carrier=None)
    assert detector.detect_rails(str(port1), list(PORT1.items()))["problem"] is None


def test_a_rail_without_an_rdma_device_is_named(port1, capsys):
    port1.netdev("enp1s0f2np2")
    rails = [("enp1s0f1np1", "192.168.100.10"), ("enp1s0f2np2", "192.168.102.10")]
    result = detector.detect_rails(str(port1), rails)
    assert result["problem"] == "no_device"
    assert result["message"] == "no RoCE device on rail enp1s0f2np2 (rdma link / ibv_devices show none)"
    code, _, err = run(capsys, "--sysfs", str(port1), "--rails", "enp1s0f1np1=192.168.100.10,enp1s0f2np2=192.168.102.10")
    assert code == 2 and err == "roce_detect: " + result["message"] + "\n"


def test_the_first_failing_rail_sets_the_problem_and_every_one_is_named(tmp_path):
    tree = spark(tmp_path / "sys", {"enp1s0f1np1": "192.168.100.10"}, cabled=(1,))
    tree.netdev("enp9s0")
    rails = [("enp9s0", "192.168.104.10"), *PORT1.items()]
    result = detector.detect_rails(str(tree), rails)
    assert result["problem"] == "no_device"
    first, second = result["message"].split("; ")
    assert "rail enp9s0" in first and "192.168.101.10 on roceP2p1s0f1" in second
    assert "\n" not in result["message"]


def test_disagreeing_indexes_leave_the_gid_index_to_nccl(port1, capsys, tmp_path):
    port1.move_gid("roceP2p1s0f1", 3, 5)
    result = detector.detect_rails(str(port1), list(PORT1.items()))
    assert result["problem"] is None and result["gid_index"] is None
    assert result["hcas"] == ["rocep1s0f1", "roceP2p1s0f1"]
    assert [rail["gid_index"] for rail in result["rails"]] == [3, 5]
    assert "enp1s0f1np1/rocep1s0f1 3, enP2p1s0f1np1/roceP2p1s0f1 5" in result["gid_note"]

    target = tmp_path / "run" / "roce.env"
    code, out, err = run(capsys, "--sysfs", str(port1), "--rails", rails_arg(PORT1), "--env", "--output", str(target))
    assert (code, out) == (0, "")
    assert target.read_text() == "NCCL_IB_HCA=rocep1s0f1,roceP2p1s0f1\n"
    # One line for the journal (the serving unit runs this as ExecStartPre).
    assert err == "roce_detect: %s\n" % result["gid_note"] and err.count("\n") == 1
    assert "NCCL_IB_GID_INDEX left unset" in err


def test_agreeing_indexes_print_no_note(port1, capsys):
    assert run(capsys, "--sysfs", str(port1), "--rails", rails_arg(PORT1), "--env")[2] == ""


def test_env_file_is_private_and_atomic_in_rails_mode(port1, capsys, tmp_path):
    target = tmp_path / "run" / "spark-cluster" / "roce.env"
    code, out, _ = run(capsys, "--sysfs", str(port1), "--rails", rails_arg(PORT1), "--env", "--output", str(target))
    assert (code, out) == (0, "")
    assert target.read_text() == "NCCL_IB_HCA=rocep1s0f1,roceP2p1s0f1\nNCCL_IB_GID_INDEX=3\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert os.listdir(str(target.parent)) == ["roce.env"]


def test_rails_through_the_shipped_file_as_a_subprocess(port1, tmp_path):
    target = tmp_path / "roce.env"
    result = subprocess.run(
        [sys.executable, str(DETECTOR_SOURCE), "--sysfs", str(port1), "--rails", rails_arg(PORT1),
         "--wait", "5", "--env", "--output", str(target)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert target.read_text() == "NCCL_IB_HCA=rocep1s0f1,roceP2p1s0f1\nNCCL_IB_GID_INDEX=3\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_a_container_sys_without_device_links_finds_the_device_by_its_gids(port1):
    # No device/net (mlx5) link: the GIDs owned by the rail's netdev name it.
    for device in ("rocep1s0f1", "roceP2p1s0f1"):
        for entry in (port1.ib(device) / "device" / "net").iterdir():
            (entry / "ifindex").unlink()
            entry.rmdir()
    result = detector.detect_rails(str(port1), list(PORT1.items()))
    assert result["problem"] is None and result["hcas"] == ["rocep1s0f1", "roceP2p1s0f1"]


def test_the_rails_device_is_the_one_bound_to_it_not_one_that_names_it(port1):
    # A soft-RoCE device on another netdev whose table (wrongly) names the
    # rail's netdev as an owner: the mlx5 device bound to the rail is the rail's.
    port1.netdev("eth9")
    port1.rxe("rxe9", "eth9")
    port1.set_gid("rxe9", 1, mapped("192.168.100.10"), ROCE_V2, "enp1s0f1np1")
    result = detector.detect_rails(str(port1), list(PORT1.items()))
    assert result["hcas"] == ["rocep1s0f1", "roceP2p1s0f1"]


# --- pins in rails mode ---------------------------------------------------------------------

def test_both_pins_are_taken_as_given(port1, capsys):
    result = detector.detect_rails(str(port1), list(PORT1.items()), hca="mlx5_0:1,mlx5_1", gid_index=7)
    assert (result["hcas"], result["gid_index"], result["problem"]) == (["mlx5_0:1", "mlx5_1"], 7, None)
    assert result["pinned"] == {"hca": ["mlx5_0:1", "mlx5_1"], "gid_index": 7}
    assert [rail["netdev"] for rail in result["rails"]] == list(PORT1)
    code, out, _ = run(capsys, "--sysfs", str(port1), "--rails", rails_arg(PORT1), "--hca", "mlx5_0:1,mlx5_1",
                       "--gid-index", "7", "--env")
    assert (code, out) == (0, "NCCL_IB_HCA=mlx5_0:1,mlx5_1\nNCCL_IB_GID_INDEX=7\n")


def test_a_pinned_hca_keeps_its_port_and_picks_its_rail(port1, capsys):
    # Only the second half pinned (as dev:port): the other rail is not NCCL's concern,
    # even without its address.
    port1.clear_gid("rocep1s0f1", 3)
    result = detector.detect_rails(str(port1), list(PORT1.items()), hca="roceP2p1s0f1:1")
    assert result["problem"] is None
    assert result["hcas"] == ["roceP2p1s0f1:1"] and result["gid_index"] == 3
    code, out, _ = run(capsys, "--sysfs", str(port1), "--rails", rails_arg(PORT1), "--hca", "roceP2p1s0f1:1", "--env")
    assert (code, out) == (0, "NCCL_IB_HCA=roceP2p1s0f1:1\nNCCL_IB_GID_INDEX=3\n")


def test_pinned_hcas_follow_rail_order(port1):
    result = detector.detect_rails(str(port1), list(PORT1.items()), hca="roceP2p1s0f1,rocep1s0f1:1")
    assert result["hcas"] == ["rocep1s0f1:1", "roceP2p1s0f1"]


def test_a_missing_pinned_device_or_one_on_no_rail_is_refused(port1):
    missing = detector.detect_rails(str(port1), list(PORT1.items()), hca="rocep1s0f1,mlx5_9:1")
    assert missing["problem"] == "no_device"
    assert missing["message"] == "pinned RoCE device mlx5_9:1 not found (rdma link / ibv_devices)"
    elsewhere = detector.detect_rails(str(port1), list(PORT1.items()), hca="rocep1s0f0")
    assert elsewhere["problem"] == "no_device"
    assert elsewhere["message"] == "pinned RoCE device rocep1s0f0 on none of the rails enp1s0f1np1/enP2p1s0f1np1"


def test_a_pinned_gid_index_alone_keeps_the_rails_hcas(tmp_path, capsys):
    # Pinned index: a rail without its GID yet is no reason to refuse (as for a bond).
    tree = spark(tmp_path / "sys", {"enp1s0f1np1": "192.168.100.10"}, cabled=(1,))
    result = detector.detect_rails(str(tree), list(PORT1.items()), gid_index=3)
    assert result["problem"] is None
    assert result["hcas"] == ["rocep1s0f1", "roceP2p1s0f1"] and result["gid_index"] == 3
    code, out, _ = run(capsys, "--sysfs", str(tree), "--rails", rails_arg(PORT1), "--gid-index", "3", "--env")
    assert (code, out) == (0, "NCCL_IB_HCA=rocep1s0f1,roceP2p1s0f1\nNCCL_IB_GID_INDEX=3\n")
    tree.netdev("enp9s0")
    no_device = detector.detect_rails(str(tree), [("enp9s0", "192.168.104.10")], gid_index=3)
    assert no_device["problem"] == "no_device" and "rail enp9s0" in no_device["message"]


# --- the command line --------------------------------------------------------------------------

@pytest.mark.parametrize(
    "value, error",
    [
        ("enp1s0f1np1", "rail 'enp1s0f1np1' is not NETDEV=IP"),
        ("enp1s0f1np1=fe80::1", "rail 'enp1s0f1np1=fe80::1' has no IPv4 address"),
        ("a=10.0.0.1,a=10.0.1.1", "rail a is listed twice"),
        (",", "no rail given"),
    ],
)
def test_bad_rails_are_refused_by_the_parser(capsys, value, error):
    with pytest.raises(SystemExit) as done:
        detector.main(["--rails", value])
    assert done.value.code == 2 and error in capsys.readouterr().err


def test_a_rail_address_may_carry_its_prefix():
    assert detector.parse_rails("enp1s0f1np1=192.168.100.10/24, enP2p1s0f1np1=192.168.101.10") == [
        ("enp1s0f1np1", "192.168.100.10"), ("enP2p1s0f1np1", "192.168.101.10")]


@pytest.mark.parametrize("other", [["--netdev", "bond0"], ["--slaves", "a,b"], ["--ip", "10.0.0.1"]])
def test_rails_do_not_mix_with_the_bond_form(capsys, other):
    with pytest.raises(SystemExit) as done:
        detector.main(["--rails", "a=10.0.0.1", *other])
    assert done.value.code == 2 and "--rails replaces --netdev/--slaves/--ip" in capsys.readouterr().err


def test_wait_retries_the_rails_until_the_deadline(tmp_path, monkeypatch, capsys):
    tree = spark(tmp_path / "sys", {}, cabled=(1,))
    clock = SimpleNamespace(now=0.0, sleeps=[])

    def sleep(seconds):
        clock.sleeps.append(seconds)
        clock.now += seconds
        if len(clock.sleeps) == 2:  # the addresses arrive during the second sleep
            for netdev, ip in PORT1.items():
                tree.cx7_gids(DEVICE_OF[netdev], netdev, ip)

    monkeypatch.setattr(detector, "time", SimpleNamespace(monotonic=lambda: clock.now, sleep=sleep))
    code, out, _ = run(capsys, "--sysfs", str(tree), "--rails", rails_arg(PORT1), "--wait", "10", "--env")
    assert code == 0 and clock.sleeps == [0.5, 0.5]
    assert out == "NCCL_IB_HCA=rocep1s0f1,roceP2p1s0f1\nNCCL_IB_GID_INDEX=3\n"


def test_the_json_shape_is_the_same_in_both_forms(port1, tmp_path, capsys):
    _, rails_out, _ = run(capsys, "--sysfs", str(port1), "--rails", rails_arg(PORT1))
    bond = spark_bond(tmp_path / "bond")
    _, bond_out, _ = run(capsys, "--sysfs", str(bond), "--netdev", "bond0")
    rails, bonded = json.loads(rails_out), json.loads(bond_out)
    assert set(rails) == set(bonded)
    assert set(rails["rails"][0]) == {"netdev", "ip", "device", "gid_index", "gid", "port", "state"}
    assert bonded["rails"] is None and bonded["gid_note"] is None


# --- the bond form on Spark-shaped trees ----------------------------------------------------------

def test_mlx5_bond_gives_the_slaves_devices(tmp_path, capsys):
    # A CX-7 bond (not RoCE LAG): each slave's device carries the bond's GID (ndev bond0).
    tree = spark_bond(tmp_path / "sys")
    result = detector.detect(str(tree), "bond0", ip="10.0.0.1")
    assert result["problem"] is None
    assert result["hcas"] == ["roceP2p1s0f1", "rocep1s0f1"] and result["gid_index"] == 3
    code, out, _ = run(capsys, "--sysfs", str(tree), "--netdev", "bond0", "--slaves", "enp1s0f1np1,enP2p1s0f1np1",
                       "--ip", "10.0.0.1", "--env")
    assert (code, out) == (0, "NCCL_IB_HCA=roceP2p1s0f1,rocep1s0f1\nNCCL_IB_GID_INDEX=3\n")


def test_a_bond_seen_through_lower_links_is_still_a_bond(tmp_path):
    tree = SparkSysfs(tmp_path / "sys")
    for netdev in ("enp1s0f1np1", "enP2p1s0f1np1"):
        tree.netdev(netdev)
        tree.rxe(DEVICE_OF[netdev], netdev)
        tree.rxe_gids(DEVICE_OF[netdev], "team0", "10.0.0.1")
    tree.bond("team0", ["enp1s0f1np1", "enP2p1s0f1np1"], lower_links=True)
    (tree.ib("rocep1s0f1") / "parent").write_text("team0\n")
    assert detector.is_master(str(tree), "team0")
    assert detector.detect(str(tree), "team0")["hcas"] == ["rocep1s0f1"]


def test_lab_rxe_moved_onto_the_bond_is_the_one_hca(tmp_path, capsys):
    tree = lab_rxe_bond(tmp_path / "sys")
    result = detector.detect(str(tree), "bond0", ip="10.0.0.1")
    assert result["problem"] is None
    # roceP2p1s0f1 stays on its slave port: it would never receive, so NCCL must not use it.
    assert result["hcas"] == ["rocep1s0f1"] and result["gid_index"] == 1
    assert sorted(device["name"] for device in result["devices"]) == ["roceP2p1s0f1", "rocep1s0f1"]
    code, out, _ = run(capsys, "--sysfs", str(tree), "--netdev", "bond0", "--env")
    assert (code, out) == (0, "NCCL_IB_HCA=rocep1s0f1\nNCCL_IB_GID_INDEX=1\n")


def test_the_bond_rule_is_for_bonds_only_not_a_physical_port(tmp_path):
    # Two devices with the port's GID: the one bound to it, and a soft-RoCE
    # device on another netdev whose table names the port. On a bond the bound
    # one would win; a physical --netdev has no slaves to leave out, so both count.
    def tree_with(netdev):
        tree = SparkSysfs(tmp_path / netdev)
        tree.netdev(netdev)
        tree.rxe("rxe0", netdev)
        tree.rxe_gids("rxe0", netdev, "10.0.0.1")
        tree.netdev("eth9")
        tree.rxe("rxe9", "eth9")
        tree.rxe_gids("rxe9", netdev, "10.0.0.1")
        return tree

    physical = tree_with("enp1s0f1np1")
    assert not detector.is_master(str(physical), "enp1s0f1np1")
    assert detector.detect(str(physical), "enp1s0f1np1")["hcas"] == ["rxe0", "rxe9"]
    bonded = tree_with("bond0")
    bonded.bond("bond0", ["eth9"])
    assert detector.is_master(str(bonded), "bond0")
    assert detector.detect(str(bonded), "bond0")["hcas"] == ["rxe0"]
    # Named slaves make a bond before the kernel shows one (the netdev does not exist yet).
    assert detector.is_master(str(physical), "bond0", ["enp1s0f1np1"])


def test_a_physical_netdev_in_the_bond_form_gives_its_own_device(port1):
    result = detector.detect(str(port1), "enP2p1s0f1np1", ip="192.168.101.10")
    assert result["problem"] is None and result["hcas"] == ["roceP2p1s0f1"] and result["gid_index"] == 3


def test_switching_from_bond_to_rails_finds_the_device_still_on_the_bond(tmp_path):
    """The run that goes from bond to dual_subnet reads the node before the
    network role deletes the bond: in the lab, one soft-RoCE device still
    sits on bond0. The rail has a device then, only no GID for its address
    yet, which the rdma role checks again after the network role."""
    tree = lab_rxe_bond(tmp_path / "sys", ip="192.168.100.10")
    for slave in ("enp1s0f1np1", "enP2p1s0f1np1"):
        os.symlink("../bond0", str(tree.net(slave) / "master"))
    result = detector.detect_rails(str(tree), [("enp1s0f1np1", "192.168.100.10"), ("enP2p1s0f1np1", "192.168.101.10")])
    assert [rail["device"] for rail in result["rails"]] == ["rocep1s0f1", "roceP2p1s0f1"]
    assert result["problem"] == "no_ipv4_gid", result["message"]
    # a port no bond holds still has no device to borrow
    lone = SparkSysfs(tmp_path / "lone")
    lone.netdev("enp1s0f1np1")
    assert detector.detect_rails(str(lone), [("enp1s0f1np1", "192.168.100.10")])["problem"] == "no_device"
