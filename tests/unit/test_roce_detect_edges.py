"""roles/rdma/files/roce_detect.py at its edges: the --wait loop (retry while
nothing is found, answer at once when something is), a pinned device that is
missing, and the output file when writing it fails. Each of these once let a
wrong line through the tests (mutation testing, docs/benchmarks.md); on a node
they would delay the serving unit's start, or leave stray files in /run."""

import os
import shutil
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest
from spark_sysfs import ROCE_V2, detector, mapped, spark_bond

FIXTURES = Path(__file__).parent / "fixtures" / "sysfs"
SLAVES = "enp1s0f0np0,enp1s0f1np1"


class FakeClock:
    """time.monotonic and time.sleep for the detector: sleeping advances the clock."""

    def __init__(self):
        self.now = 100.0
        self.sleeps = []

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(detector, "time", SimpleNamespace(monotonic=fake.monotonic, sleep=fake.sleep))
    return fake


def count_detections(monkeypatch):
    calls = []
    real = detector.detect

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(detector, "detect", counting)
    return calls


def test_wait_retries_until_the_deadline_when_nothing_is_found(clock, monkeypatch, capsys):
    """At boot the bond's GID appears some seconds after the unit starts:
    `--wait 2` keeps looking every half second for 2 s before giving up."""
    calls = count_detections(monkeypatch)
    code = detector.main(["--sysfs", str(FIXTURES / "cx7-fresh"), "--slaves", SLAVES, "--wait", "2", "--env"])
    assert code == detector.EXIT_NOT_FOUND
    assert len(calls) == 5 and clock.sleeps == [0.5] * 4
    assert "no RoCE v2 IPv4 GID" in capsys.readouterr().err


def test_wait_answers_at_once_when_the_device_is_there(clock, monkeypatch, capsys):
    """A found device never waits out --wait (the serving unit's start would)."""
    calls = count_detections(monkeypatch)
    code = detector.main(["--sysfs", str(FIXTURES / "cx7-bond"), "--wait", "60", "--env"])
    assert code == 0 and len(calls) == 1 and clock.sleeps == []
    assert capsys.readouterr().out == "NCCL_IB_HCA=rocep1s0f0,rocep1s0f1\nNCCL_IB_GID_INDEX=3\n"


def test_report_mode_does_not_wait(clock, monkeypatch, capsys):
    """The deploy's fact (--report) answers what it sees now, found or not."""
    calls = count_detections(monkeypatch)
    assert detector.main(["--sysfs", str(FIXTURES / "cx7-fresh"), "--slaves", SLAVES, "--wait", "60", "--report"]) == 0
    assert len(calls) == 1 and clock.sleeps == []


def test_a_missing_pinned_device_is_named():
    """With NCCL_IB_HCA pinned in group_data, the message says which pinned
    name the node lacks (and keeps its :port suffix)."""
    result = detector.detect(str(FIXTURES / "cx7-bond"), "bond0", slaves=SLAVES.split(","),
                             hca="rocep1s0f0,mlx5_9:1")
    assert result["problem"] == "no_device"
    assert result["message"] == "pinned RoCE device mlx5_9:1 not found (rdma link / ibv_devices)"


def test_a_failed_write_leaves_no_temporary_file(tmp_path):
    """If the output cannot be put in place, the half-made temporary file is
    removed (it would pile up in /run at every start) and the error stands."""
    target = tmp_path / "roce.env"
    target.mkdir()  # a directory in the way: os.replace fails
    with pytest.raises(OSError):
        detector.write_private(str(target), "NCCL_IB_HCA=x\n")
    assert os.listdir(tmp_path) == ["roce.env"]


def test_the_directory_it_creates_is_0755(tmp_path):
    """/run/spark-cluster does not exist at boot: it is made 0755 like the rest
    of /run; only the file in it is private (0600)."""
    target = tmp_path / "run" / "spark-cluster" / "roce.env"
    previous = os.umask(0o022)
    try:
        detector.write_private(str(target), "NCCL_IB_HCA=x\n")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o755
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


# --- GIDs on a node with more than one address, or sparse sysfs ----------------------

BONDED = ("rocep1s0f0", "rocep1s0f1")


def node_copy(tmp_path):
    """A Spark with bond0 (10.0.0.1) over the first half of each port."""
    return spark_bond(tmp_path / "sys", slaves=SLAVES.split(","))


def set_gid(tree, device, index, ip, owner="bond0"):
    tree.set_gid(device, index, mapped(ip), ROCE_V2, owner)


def test_a_second_address_on_the_bond_and_the_node_ip(tmp_path):
    """A node with a second address on bond0 has two RoCE v2 IPv4 GIDs: the
    lowest index is taken by default, and --ip picks its own address's GID
    wherever it sits in the table."""
    root = node_copy(tmp_path)
    for device in BONDED:
        set_gid(root, device, 3, "10.0.0.9")
        set_gid(root, device, 5, "10.0.0.1")
    plain = detector.detect(str(root), "bond0", slaves=SLAVES.split(","))
    assert plain["gid_index"] == 3
    own = detector.detect(str(root), "bond0", slaves=SLAVES.split(","), ip="10.0.0.1")
    assert own["problem"] is None and own["gid_index"] == 5
    assert own["gids"] == {device: mapped("10.0.0.1") for device in BONDED}


def test_a_gid_whose_owner_cannot_be_read_still_counts(tmp_path):
    """Kernels without gid_attrs/ndevs (or an unreadable entry) give no owner:
    the GID is still used; only a GID owned by another netdev is skipped."""
    root = node_copy(tmp_path)
    for device in BONDED:
        (root.port_dir(device) / "gid_attrs/ndevs/3").unlink()
    result = detector.detect(str(root), "bond0", slaves=SLAVES.split(","), ip="10.0.0.1")
    assert result["problem"] is None and result["hcas"] == list(BONDED) and result["gid_index"] == 3


def test_a_device_is_found_through_the_owner_of_its_gids(tmp_path):
    """A device whose PCI netdev link is missing from sysfs (a container's
    /sys, say) is still found: its GIDs name bond0 as their owner."""
    root = node_copy(tmp_path)
    shutil.rmtree(str(root.ib("rocep1s0f0") / "device/net"))
    result = detector.detect(str(root), "bond0", slaves=SLAVES.split(","), ip="10.0.0.1")
    assert result["problem"] is None and result["hcas"] == list(BONDED)


def test_the_result_says_what_was_pinned():
    """The deploy's fact reports pinned values as such (group_data
    nccl_ib_hca / nccl_ib_gid_index), and no pin as None."""
    pinned = detector.detect(str(FIXTURES / "cx7-bond"), "bond0", hca="rocep1s0f0:1, rocep1s0f1", gid_index=3)
    assert pinned["pinned"] == {"hca": ["rocep1s0f0:1", "rocep1s0f1"], "gid_index": 3}
    assert pinned["hcas"] == ["rocep1s0f0:1", "rocep1s0f1"] and pinned["gid_index"] == 3
    found = detector.detect(str(FIXTURES / "cx7-bond"), "bond0", slaves=SLAVES.split(","))
    assert found["pinned"] == {"hca": None, "gid_index": None}


def test_a_pinned_gid_index_alone_still_detects_the_devices():
    """Pinning only nccl_ib_gid_index keeps the HCAs detected."""
    result = detector.detect(str(FIXTURES / "cx7-bond"), "bond0", slaves=SLAVES.split(","), gid_index=1)
    assert result["problem"] is None and result["hcas"] == list(BONDED) and result["gid_index"] == 1


def test_unreadable_and_garbage_gid_entries_are_skipped(tmp_path):
    """An entry that cannot be read (EINVAL) or does not parse is no GID: the
    detector reads on to the RoCE v2 one instead of failing."""
    root = node_copy(tmp_path)
    for device in BONDED:
        gids = root.port_dir(device) / "gids"
        (gids / "1").unlink()
        (gids / "1").mkdir()  # reading it fails like EINVAL does
        (gids / "2").write_text("not-a-gid\n")
    result = detector.detect(str(root), "bond0", slaves=SLAVES.split(","), ip="10.0.0.1")
    assert result["problem"] is None and result["gid_index"] == 3


def test_the_message_names_the_slaves_whatever_the_bond_is_called(capsys):
    """group_data may name the bond anything (here one that sorts after its
    ports): the message still lists the ports that have no RoCE device."""
    code = detector.main(["--sysfs", str(FIXTURES / "no-device"), "--netdev", "qsfp", "--slaves", SLAVES])
    assert code == detector.EXIT_NOT_FOUND
    assert capsys.readouterr().err == (
        "roce_detect: no RoCE device on enp1s0f0np0/enp1s0f1np1 (rdma link / ibv_devices show none)\n")


def test_help_says_what_the_detector_does(capsys):
    with pytest.raises(SystemExit) as done:
        detector.main(["--help"])
    assert done.value.code == 0
    assert "Find the RoCE devices behind a netdev" in capsys.readouterr().out


def test_without_wait_a_missing_gid_fails_at_the_first_look(clock, monkeypatch):
    """No --wait (the deploy's fact, a manual run) means one look, no retry."""
    calls = count_detections(monkeypatch)
    assert detector.main(["--sysfs", str(FIXTURES / "cx7-fresh"), "--slaves", SLAVES]) == detector.EXIT_NOT_FOUND
    assert len(calls) == 1 and clock.sleeps == []


def test_a_vlan_gid_before_the_bonds_is_passed_over(tmp_path):
    """A VLAN on the bond (bond0.100) has RoCE v2 GIDs of its own, at lower
    indexes: they are skipped and the bond's own GID is still found."""
    root = node_copy(tmp_path)
    for device in BONDED:
        set_gid(root, device, 2, "10.0.100.1", owner="bond0.100")
    result = detector.detect(str(root), "bond0", slaves=SLAVES.split(","))
    assert result["problem"] is None and result["gid_index"] == 3


def test_pinned_hcas_with_a_port_and_a_detected_gid_index():
    """NCCL_IB_HCA pinned as `dev:port` names the device before the colon; the
    GID index is still detected on those devices."""
    result = detector.detect(str(FIXTURES / "cx7-bond"), "bond0", slaves=SLAVES.split(","),
                             hca="rocep1s0f0:1,rocep1s0f1:1")
    assert result["problem"] is None
    assert [device["name"] for device in result["devices"]] == list(BONDED)
    # The :port the user pinned reaches NCCL_IB_HCA too (NCCL reads it there).
    assert result["hcas"] == [f"{name}:1" for name in BONDED] and result["gid_index"] == 3
    assert detector.env_lines(result).startswith("NCCL_IB_HCA=rocep1s0f0:1,rocep1s0f1:1\n")
