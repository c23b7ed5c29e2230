"""The 4-node lab's learning switch, over real UDP sockets on 127.0.0.1."""

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.switch import AGE_SECONDS, LearningSwitch

REPO = Path(__file__).resolve().parents[2]
BROADCAST = b"\xff" * 6


def mac(n):
    return bytes([0x52, 0x54, 0, 0x5A, n, 1])


def frame(dst, src, payload=b"hello"):
    return dst + src + b"\x08\x00" + payload


A, B, C = ("127.0.0.1", 5001), ("127.0.0.1", 5002), ("127.0.0.1", 5003)


def test_floods_unknown_and_broadcast_then_forwards_learned():
    switch = LearningSwitch([A, B, C])
    assert switch.destinations(frame(BROADCAST, mac(1)), A) == [B, C]
    assert switch.destinations(frame(mac(1), mac(2)), B) == [A]
    assert switch.destinations(frame(mac(3), mac(2)), B) == [A, C]  # mac 3 not seen yet
    assert switch.destinations(frame(mac(2), mac(1)), A) == [B]


def test_ignores_strangers_runts_and_hairpins():
    switch = LearningSwitch([A, B])
    assert switch.destinations(frame(BROADCAST, mac(9)), ("127.0.0.1", 6000)) == []
    assert switch.destinations(b"\x00" * 10, A) == []
    switch.destinations(frame(BROADCAST, mac(1)), A)
    assert switch.destinations(frame(mac(1), mac(1)), A) == []


def test_forgets_old_entries_and_follows_a_moved_mac():
    now = [0.0]
    switch = LearningSwitch([A, B, C], clock=lambda: now[0])
    switch.destinations(frame(BROADCAST, mac(1)), A)
    switch.destinations(frame(BROADCAST, mac(1)), C)  # the MAC moved to C
    assert switch.destinations(frame(mac(1), mac(2)), B) == [C]
    now[0] += AGE_SECONDS + 1
    assert switch.destinations(frame(mac(1), mac(2)), B) == [A, C]


def free_udp_ports(count):
    sockets = []
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.fixture
def running_switch(tmp_path):
    switch_port, other_switch, *member_ports = free_udp_ports(5)
    members = []
    for port in member_ports:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", port))
        members.append(s)
    pid_file = tmp_path / "switch.pid"
    process = subprocess.Popen(
        [sys.executable, "-m", "lab.switch", "--pid-file", str(pid_file),
         "--switch", f"{switch_port}=" + ",".join(map(str, member_ports)),
         "--switch", f"{other_switch}={member_ports[0]}"],
        cwd=REPO,
    )
    deadline = time.monotonic() + 10
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pid_file.exists(), "switch did not start"
    yield ("127.0.0.1", switch_port), members, pid_file
    process.terminate()
    process.wait(10)
    for s in members:
        s.close()


def received(sock, timeout=5.0):
    """The next frame on `sock`: a frame that must come may take seconds on a
    loaded host; one that must not come is waited for briefly, after the
    frames that must have arrived."""
    sock.settimeout(timeout)
    try:
        return sock.recv(65535)
    except socket.timeout:
        return None


def nothing_on(*socks):
    return all(received(sock, timeout=0.3) is None for sock in socks)


def test_switch_process_floods_learns_and_carries_jumbo_frames(running_switch):
    switch, (a, b, c), pid_file = running_switch
    hello = frame(BROADCAST, mac(1), b"who has")
    a.sendto(hello, switch)
    assert received(b) == hello and received(c) == hello and nothing_on(a)

    reply = frame(mac(1), mac(2), b"x" * 9000)
    b.sendto(reply, switch)
    assert received(a) == reply
    assert nothing_on(c)  # learned: only the port behind mac 1 gets it

    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind(("127.0.0.1", 0))
    stranger.sendto(frame(BROADCAST, mac(7)), switch)
    stranger.close()
    assert nothing_on(a, b)


def test_switch_removes_its_pid_file_when_stopped(running_switch, tmp_path):
    _, _, pid_file = running_switch
    pid = int(pid_file.read_text())
    import os
    import signal

    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_file.exists()
