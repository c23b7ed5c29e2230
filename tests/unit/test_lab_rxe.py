"""lab-rxe (the image's soft-RoCE keeper), run for real against a fake sysfs and a fake `rdma`.

Which device follows a bond: the first (lab-rxe's PAIRS order, i.e. cx7.LANES) whose port
is enslaved to it; exactly one moves, it goes back when the bond goes, and a device someone
deleted while its bond stood is never re-created.
"""

import re
import subprocess
from pathlib import Path

import pytest

from lab import cx7, image

LAB_RXE = image.RECIPE_DIR / "files/usr/local/sbin/lab-rxe"
# `rdma link add NAME type rxe netdev DEV` / `rdma link delete NAME`, on the fake sysfs.
FAKE_RDMA = """#!/bin/sh
echo "rdma $*" >> "$CALLS"
case "$2" in
    add) mkdir -p "$SYSFS_ROOT/class/infiniband/$3/ports/1"
         echo "$7" > "$SYSFS_ROOT/class/infiniband/$3/parent"
         if [ "$(cat "$SYSFS_ROOT/class/net/$7/carrier" 2>/dev/null)" = 0 ]; then state="1: DOWN"; else state="4: ACTIVE"; fi
         echo "$state" > "$SYSFS_ROOT/class/infiniband/$3/ports/1/state" ;;
    delete) [ -d "$SYSFS_ROOT/class/infiniband/$3" ] || exit 1
            rm -r "$SYSFS_ROOT/class/infiniband/$3" ;;
esac
"""


class FakeNode:
    def __init__(self, root: Path):
        self.sys, self.state, self.bin = root / "sys", root / "run-lab-rxe", root / "bin"
        self.calls = root / "calls"
        self.calls.write_text("")
        self.bin.mkdir()
        (self.bin / "rdma").write_text(FAKE_RDMA)
        (self.bin / "rdma").chmod(0o755)
        for lane in cx7.LANES:
            self.netdev(lane.netdev)
            self.rxe(lane.rdma, lane.netdev)

    def netdev(self, name, carrier=1):
        (self.sys / "class/net" / name).mkdir(parents=True, exist_ok=True)
        (self.sys / "class/net" / name / "carrier").write_text(f"{carrier}\n")

    def rxe(self, name, parent, state="4: ACTIVE"):
        (self.sys / "class/infiniband" / name / "ports/1").mkdir(parents=True, exist_ok=True)
        (self.sys / "class/infiniband" / name / "parent").write_text(parent + "\n")
        (self.sys / "class/infiniband" / name / "ports/1/state").write_text(state + "\n")

    def enslave(self, bond, *ports):
        self.netdev(bond)
        for port in ports:
            (self.sys / "class/net" / port / "master").symlink_to(f"../{bond}")

    def free(self, *ports):
        for port in ports:
            (self.sys / "class/net" / port / "master").unlink()

    def remove_netdev(self, name):
        for child in (self.sys / "class/net" / name).iterdir():
            child.unlink()
        (self.sys / "class/net" / name).rmdir()

    def once(self):
        env = {"PATH": f"{self.bin}:/usr/bin:/bin", "SYSFS_ROOT": str(self.sys), "LAB_RXE_STATE": str(self.state),
               "CALLS": str(self.calls)}
        result = subprocess.run(["sh", str(LAB_RXE), "once"], capture_output=True, text=True, timeout=20, env=env)
        assert (result.returncode, result.stderr) == (0, ""), result
        return result.stdout

    def parents(self):
        base = self.sys / "class/infiniband"
        return {p.name: (p / "parent").read_text().strip() for p in sorted(base.iterdir())}


def test_pairs_are_the_lab_cx7_lanes_in_order():
    pairs = re.search(r'^PAIRS="([^"]+)"$', LAB_RXE.read_text(), re.M)[1].split()
    assert pairs == [f"{lane.rdma}:{lane.netdev}" for lane in cx7.LANES]


def test_nothing_moves_without_a_bond(tmp_path):
    node = FakeNode(tmp_path)
    assert node.once() == ""
    assert node.parents() == {lane.rdma: lane.netdev for lane in cx7.LANES}
    assert node.calls.read_text() == ""


@pytest.mark.parametrize("ports, follower", [
    (("enp1s0f1np1", "enP2p1s0f1np1"), "rocep1s0f1"),    # the two halves of port 1
    (("enP2p1s0f1np1", "enp1s0f1np1"), "rocep1s0f1"),    # enslaving order does not matter: PAIRS does
    (("enp1s0f0np0", "enp1s0f1np1"), "rocep1s0f0"),      # the first half of each port
    (("enP2p1s0f0np0", "enP2p1s0f1np1"), "roceP2p1s0f0"),
])
def test_exactly_one_device_follows_the_bond_and_goes_back_when_it_goes(tmp_path, ports, follower):
    node = FakeNode(tmp_path)
    home = {lane.rdma: lane.netdev for lane in cx7.LANES}
    node.enslave("bond0", *ports)
    assert node.once() == f"moving {follower} from {home[follower]} to bond0\n"
    assert node.parents() == {**home, follower: "bond0"}
    assert node.once() == ""  # settled
    assert (node.state / follower).read_text() == "bond0\n"

    # The bond goes away, taking its rxe device with it: back on its port.
    node.free(*ports)
    node.remove_netdev("bond0")
    (node.sys / "class/infiniband" / follower / "parent").unlink()
    (node.sys / "class/infiniband" / follower / "ports/1/state").unlink()
    (node.sys / "class/infiniband" / follower / "ports/1").rmdir()
    (node.sys / "class/infiniband" / follower / "ports").rmdir()
    (node.sys / "class/infiniband" / follower).rmdir()
    assert node.once() == f"bond0 is gone: putting {follower} back on {home[follower]}\n"
    assert node.parents() == home
    assert not (node.state / follower).exists()


def test_two_bonds_each_get_their_own_follower(tmp_path):
    node = FakeNode(tmp_path)
    node.enslave("bond0", "enp1s0f0np0", "enP2p1s0f0np0")
    node.enslave("bond1", "enp1s0f1np1", "enP2p1s0f1np1")
    node.once()
    assert node.parents() == {"rocep1s0f0": "bond0", "roceP2p1s0f0": "enP2p1s0f0np0",
                              "rocep1s0f1": "bond1", "roceP2p1s0f1": "enP2p1s0f1np1"}


def test_a_device_deleted_while_its_bond_stands_stays_deleted(tmp_path):
    node = FakeNode(tmp_path)
    node.enslave("bond0", "enp1s0f1np1", "enP2p1s0f1np1")
    node.once()
    subprocess.run(["rm", "-r", str(node.sys / "class/infiniband/rocep1s0f1")], check=True)
    assert node.once() == ""
    assert "rocep1s0f1" not in node.parents()
    assert not (node.state / "rocep1s0f1").exists()
    # ... and the other half's device does not take its place on the bond.
    assert node.parents()["roceP2p1s0f1"] == "enP2p1s0f1np1"
    node.free("enp1s0f1np1", "enP2p1s0f1np1")
    node.remove_netdev("bond0")
    assert node.once() == "" and "rocep1s0f1" not in node.parents()


def test_a_device_reading_active_on_a_port_without_carrier_is_re_created_down(tmp_path):
    node = FakeNode(tmp_path)
    node.netdev("enp1s0f0np0", carrier=0)
    node.netdev("enP2p1s0f0np0", carrier=0)
    node.rxe("roceP2p1s0f0", "enP2p1s0f0np0", state="1: DOWN")  # already right
    assert node.once() == "re-creating rocep1s0f0: enp1s0f0np0 has no carrier\n"
    assert (node.sys / "class/infiniband/rocep1s0f0/ports/1/state").read_text() == "1: DOWN\n"
    assert node.parents()["rocep1s0f0"] == "enp1s0f0np0"
    assert node.once() == ""


def test_lab_rxe_passes_sh_n():
    assert subprocess.run(["sh", "-n", str(LAB_RXE)]).returncode == 0
