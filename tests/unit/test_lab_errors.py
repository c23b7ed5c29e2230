"""One clear line, no traceback, non-zero exit: missing programs, taken ports, a VM that never answers."""

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from lab import bootwait, cli, lab, nodes, ports, ssh, tools
from lab.errors import LabError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("SPARK_LAB_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("SPARK_LAB_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("program, package", [
    ("qemu-system-x86_64", "qemu-system-x86"), ("qemu-img", "qemu-utils"), ("mmdebstrap", "mmdebstrap"),
])
def test_missing_program_names_the_apt_package(monkeypatch, program, package):
    monkeypatch.setattr(tools.shutil, "which", lambda *a, **k: None)
    with pytest.raises(LabError) as error:
        tools.require(program)
    assert str(error.value) == f"{program} not found: install it with `apt-get install {package}`"


def test_cli_prints_one_line_and_fails_when_qemu_is_missing(monkeypatch, capsys):
    real_which = tools.shutil.which
    monkeypatch.setattr(tools.shutil, "which",
                        lambda name, **k: None if name == "qemu-system-x86_64" else real_which(name, **k))
    assert cli.main(["up", "--nodes", "2"]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "lab: qemu-system-x86_64 not found: install it with `apt-get install qemu-system-x86`"
    ]


def test_cli_subprocess_has_no_traceback_when_programs_are_missing(tmp_path):
    env = {"PATH": str(tmp_path), "SPARK_LAB_DIR": str(tmp_path / "s"), "SPARK_LAB_CACHE": str(tmp_path / "c"),
           "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "lab", "up"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "apt-get install" in result.stderr


def test_taken_ssh_port_names_the_port_and_the_node(monkeypatch):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        monkeypatch.setenv("SPARK_LAB_SSH_BASE", str(taken - 2))
        monkeypatch.setenv("SPARK_LAB_LINK_BASE", "0")  # keep the UDP checks away from real ports
        monkeypatch.setattr(ports, "port_free", lambda port, kind=socket.SOCK_STREAM, host="127.0.0.1":
                            port != taken)
        with pytest.raises(LabError) as error:
            nodes.check_ports(2)
    message = str(error.value)
    assert f"port {taken}/TCP" in message and "ssh of spark-2" in message


def test_port_free_sees_a_real_listener():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        assert not ports.port_free(holder.getsockname()[1])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        assert not ports.port_free(port, socket.SOCK_DGRAM)
        with pytest.raises(LabError, match=f"port {port}/UDP .*QSFP port 1 of spark-3"):
            ports.require_free(port, "QSFP port 1 of spark-3", udp=True)


def test_boot_timeout_says_what_it_waited_for_and_shows_the_console_tail(monkeypatch, tmp_path, capsys):
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / "spark-2.console.log").write_text("".join(f"line {i}\n" for i in range(100)))
    monkeypatch.setattr(ssh, "reachable", lambda index: index == 1)
    monkeypatch.setattr(nodes, "running_pid", lambda index: 1234)
    spent = bootwait.Budget(seconds=0, ceiling=0, stall=0, accel="tcg", base=7, factor=1.0,
                            booting=2, cpus=2, load=0.0)
    with pytest.raises(LabError) as error:
        lab.wait_for_ssh([1, 2], spent, log=lambda line: None)
    message = str(error.value)
    assert message.startswith("spark-2 did not come up: no SSH on 127.0.0.1:2222 after 0s (waited 0s (7s under tcg)")
    assert "its console last showed: 'line 99'" in message and "`python -m lab down`" in message
    shown = capsys.readouterr().err.splitlines()
    assert shown[-30:] == [f"line {i}" for i in range(70, 100)]


def test_unknown_node_is_a_clear_error(capsys):
    assert cli.main(["rebuild", "node-9"]) == 1
    assert "unknown node 'node-9'" in capsys.readouterr().err
