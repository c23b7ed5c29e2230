"""The uninstall's shipped programs, run for real against temporary trees and
stub tools: the takeover backups go back through their own restore.sh
(roles/network/files/takeover_restore.sh), the ports are released in the right
order (qsfp_release.sh), and what is left is named (left_behind.sh)."""

import subprocess
from pathlib import Path

from test_qsfp_owners import CX7, NM_KEYFILE, NM_PATH, put, tree

from roles.network.uninstall import RELEASE, RESTORE
from spark_cluster.qsfp_owners import TAKEOVER, TAKEOVER_DIR
from spark_cluster.uninstall import left_behind_command, parse_left_behind

CX7_PATH = "/etc/netplan/40-cx7.yaml"
# What calls the stubs log: "<tool> <args>" per call, in order.
LOGGING_STUB = '#!/bin/sh\necho "$(basename "$0") $*" >>"$(dirname "$0")/calls"\n'


def stubs(root: Path, *tools: str, scripts: dict | None = None) -> Path:
    folder = root / "stubs"
    folder.mkdir(exist_ok=True)
    for tool in tools:
        put(folder, f"/{tool}", LOGGING_STUB, 0o755)
    for tool, text in (scripts or {}).items():
        put(folder, f"/{tool}", LOGGING_STUB + text, 0o755)
    return folder


def calls(folder: Path) -> list[str]:
    log = folder / "calls"
    return log.read_text().splitlines() if log.exists() else []


def sh(script: Path, *args: str, root: Path, folder: Path | None = None):
    path = f"{folder}:/usr/bin:/bin" if folder else "/usr/bin:/bin"
    return subprocess.run(["sh", str(script), *args], capture_output=True, text=True, timeout=30,
                          env={"PATH": path, "ROOT": str(root)})


def take_over(root: Path, stamp: str, *paths: str):
    result = sh(TAKEOVER, f"{TAKEOVER_DIR}/{stamp}", *paths, root=root)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    return result.stdout.splitlines()


def owner_files(root: Path) -> dict:
    return {name: value for name, value in tree(root).items() if not name.startswith("etc/spark-cluster")}


# --- takeover_restore.sh --------------------------------------------------

def test_every_moved_file_comes_back_unchanged_and_the_backups_go(tmp_path):
    root = tmp_path / "node"
    put(root, CX7_PATH, CX7, 0o600)
    put(root, NM_PATH, NM_KEYFILE, 0o600)
    before = owner_files(root)
    # Two runs each took something over (RUN_STAMP differs per run).
    take_over(root, "20260101T000000Z", CX7_PATH)
    take_over(root, "20260202T000000Z", NM_PATH)
    assert not (root / CX7_PATH.lstrip("/")).exists()

    result = sh(RESTORE, TAKEOVER_DIR, root=root)

    assert (result.returncode, result.stderr) == (0, "")
    assert sorted(result.stdout.splitlines()) == sorted([f"restored {CX7_PATH}", f"restored {NM_PATH}"])
    assert owner_files(root) == before  # same bytes, same modes
    # The backups and /etc/spark-cluster, empty now, are gone.
    assert not (root / "etc/spark-cluster").exists()


def test_a_second_restore_changes_nothing(tmp_path):
    root = tmp_path / "node"
    put(root, CX7_PATH, CX7)
    take_over(root, "20260101T000000Z", CX7_PATH)
    sh(RESTORE, TAKEOVER_DIR, root=root)
    first = tree(root)
    again = sh(RESTORE, TAKEOVER_DIR, root=root)
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")
    assert tree(root) == first


def test_a_backup_whose_path_exists_again_is_kept_and_named(tmp_path):
    root = tmp_path / "node"
    put(root, CX7_PATH, CX7)
    take_over(root, "20260101T000000Z", CX7_PATH)
    put(root, CX7_PATH, "mine\n")  # the owner wrote it again after the takeover

    result = sh(RESTORE, TAKEOVER_DIR, root=root)

    assert result.returncode == 0
    assert f"kept {TAKEOVER_DIR}/20260101T000000Z" in result.stderr
    assert (root / CX7_PATH.lstrip("/")).read_text() == "mine\n"
    # Nothing of the owner's is lost: the original stays in its backup.
    backup = root / TAKEOVER_DIR.lstrip("/") / "20260101T000000Z"
    assert (backup / CX7_PATH.lstrip("/")).read_text() == CX7


def test_a_path_moved_aside_twice_comes_back_as_the_owner_last_wrote_it(tmp_path):
    root = tmp_path / "node"
    put(root, CX7_PATH, CX7)
    take_over(root, "20260101T000000Z", CX7_PATH)
    put(root, CX7_PATH, "newer\n")
    take_over(root, "20260202T000000Z", CX7_PATH)

    result = sh(RESTORE, TAKEOVER_DIR, root=root)

    assert (root / CX7_PATH.lstrip("/")).read_text() == "newer\n"
    older = root / TAKEOVER_DIR.lstrip("/") / "20260101T000000Z"
    assert (older / CX7_PATH.lstrip("/")).read_text() == CX7
    assert not (root / TAKEOVER_DIR.lstrip("/") / "20260202T000000Z").exists()
    assert "kept" in result.stderr and "20260101T000000Z" in result.stderr


def test_restore_without_backups_does_nothing(tmp_path):
    root = tmp_path / "node"
    root.mkdir()
    result = sh(RESTORE, TAKEOVER_DIR, root=root)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert list(root.iterdir()) == []


# --- qsfp_release.sh ------------------------------------------------------

NM_ACTIVE = 'case "$*" in "is-active --quiet NetworkManager") exit 0 ;; esac\nexit 3\n'
NM_STATE = 'case "$*" in "-g GENERAL.STATE device show"*) echo "10 (unmanaged)" ;; esac\n'


def test_release_takes_ours_off_then_applies_then_gives_ports_back_to_networkmanager(tmp_path):
    root = tmp_path / "node"
    put(root, "/sys/class/net/bond0/bonding/mode", "balance-xor 2\n", 0o644)
    # netplan now gives enp1s0f0np0 to networkd (the owner's restored file): NM keeps its hands off it.
    put(root, "/run/systemd/network/10-netplan-enp1s0f0np0.network", "[Match]\n", 0o644)
    folder = stubs(tmp_path, "ip", "netplan", "sysctl", scripts={"systemctl": NM_ACTIVE, "nmcli": NM_STATE})

    result = sh(RELEASE, "bond=bond0", "bond=bond9", "address=enp1s0f1np1:192.168.100.10/24",
                "port=enp1s0f1np1", "port=enp1s0f0np0", root=root, folder=folder)

    assert (result.returncode, result.stderr) == (0, "")
    assert calls(folder) == [
        "ip link delete bond0",  # bond9 is no bond on this node
        "ip -4 address del 192.168.100.10/24 dev enp1s0f1np1",
        "netplan generate",
        "netplan apply",
        "systemctl is-active --quiet NetworkManager",
        "nmcli general reload conf",
        "nmcli -g GENERAL.STATE device show enp1s0f1np1",
        "nmcli device set enp1s0f1np1 managed yes",
        "sysctl -q -w net.ipv4.conf.all.arp_ignore=0 net.ipv4.conf.all.arp_announce=0",
        "sysctl -q --system",
    ]


def test_release_without_networkmanager_only_applies_netplan_and_resets_arp(tmp_path):
    root = tmp_path / "node"
    root.mkdir()
    folder = stubs(tmp_path, "ip", "netplan", "sysctl", "nmcli", scripts={"systemctl": "exit 3\n"})
    result = sh(RELEASE, "port=enp1s0f1np1", root=root, folder=folder)
    assert result.returncode == 0, result.stderr
    assert [call.split()[0] + " " + call.split()[1] for call in calls(folder)] == [
        "netplan generate", "netplan apply", "systemctl is-active", "sysctl -q", "sysctl -q"]


def test_release_stops_when_what_is_left_does_not_validate(tmp_path):
    root = tmp_path / "node"
    root.mkdir()
    folder = stubs(tmp_path, "ip", "sysctl", "systemctl", "nmcli",
                   scripts={"netplan": '[ "$1" = generate ] && exit 1\nexit 0\n'})
    result = sh(RELEASE, "port=enp1s0f1np1", root=root, folder=folder)
    assert result.returncode == 1
    assert "netplan generate failed" in result.stderr
    assert calls(folder) == ["netplan generate"]


def test_release_refuses_an_argument_it_does_not_know(tmp_path):
    result = sh(RELEASE, "enp1s0f1np1", root=tmp_path)
    assert result.returncode == 2 and "usage:" in result.stderr


# --- left_behind.sh -------------------------------------------------------

SYSTEMCTL_UNITS = ('case "$*" in *list-unit-files*spark-serving.service*) '
                   'echo "spark-serving.service enabled enabled" ;; esac\n')


def left_behind(tmp_path, mode, units, paths, unit_files=True):
    folder = stubs(tmp_path, scripts={"systemctl": SYSTEMCTL_UNITS if unit_files else "exit 0\n"})
    command = left_behind_command(units, paths, check=(mode == "check"))
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=30,
                          env={"PATH": f"{folder}:/usr/bin:/bin"})


def test_left_behind_names_every_unit_and_path_still_there(tmp_path):
    there = put(tmp_path, "/etc/x.conf", "x")
    gone = tmp_path / "etc" / "gone.conf"
    units = ["spark-serving-watch.service", "spark-serving.service"]
    listed = left_behind(tmp_path, "list", units, [str(there), str(gone)])
    assert listed.returncode == 0
    assert parse_left_behind(listed.stdout.splitlines()) == ["unit spark-serving.service", f"path {there}"]
    checked = left_behind(tmp_path, "check", units, [str(there), str(gone)])
    assert checked.returncode == 1
    assert "spark-cluster left behind: spark-serving.service" in checked.stderr and str(there) in checked.stderr


def test_left_behind_passes_on_a_clean_node(tmp_path):
    checked = left_behind(tmp_path, "check", ["spark-serving.service"], [str(tmp_path / "gone")], unit_files=False)
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", "")

