"""An L2 learning switch over UDP on 127.0.0.1, one per QSFP port index (4-node lab).

Each VM NIC is a qemu `-netdev socket,udp=...` endpoint: it sends every frame
to the switch's port and receives on its own. Only the configured member
endpoints are served, so nothing else on the host can inject frames.
Run detached by `python -m lab up`: python -m lab.switch --pid-file F --switch PORT=M1,M2,...
"""

from __future__ import annotations

import argparse
import os
import selectors
import signal
import socket
import sys
from pathlib import Path

LOOPBACK = "127.0.0.1"
MAX_FRAME = 65535
# Forget a MAC after this long so a node whose NIC moved is found again by flooding.
AGE_SECONDS = 300.0


class LearningSwitch:
    """The forwarding decision, kept apart from sockets so it is easy to test."""

    def __init__(self, members: list[tuple[str, int]], clock=None):
        import time

        self.members = list(members)
        self.table: dict[bytes, tuple[tuple[str, int], float]] = {}
        self._clock = clock or time.monotonic

    def destinations(self, frame: bytes, source: tuple[str, int]) -> list[tuple[str, int]]:
        if source not in self.members or len(frame) < 14:
            return []
        now = self._clock()
        dst_mac, src_mac = frame[0:6], frame[6:12]
        if not src_mac[0] & 1:
            self.table[src_mac] = (source, now)
        if not dst_mac[0] & 1:
            known = self.table.get(dst_mac)
            if known and now - known[1] < AGE_SECONDS:
                return [] if known[0] == source else [known[0]]
        return [m for m in self.members if m != source]


def serve(specs: list[tuple[int, list[int]]]) -> None:
    selector = selectors.DefaultSelector()
    for port, member_ports in specs:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((LOOPBACK, port))
        switch = LearningSwitch([(LOOPBACK, p) for p in member_ports])
        selector.register(sock, selectors.EVENT_READ, switch)
    while True:
        for key, _ in selector.select():
            sock, switch = key.fileobj, key.data
            try:
                frame, source = sock.recvfrom(MAX_FRAME)
            except OSError:
                continue
            for target in switch.destinations(frame, source):
                try:
                    sock.sendto(frame, target)
                except OSError:
                    # A member whose VM is down refuses the datagram; that is a lost frame.
                    pass


def parse_spec(text: str) -> tuple[int, list[int]]:
    port, _, members = text.partition("=")
    return int(port), [int(m) for m in members.split(",") if m]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.switch")
    parser.add_argument("--switch", action="append", type=parse_spec, required=True,
                        help="PORT=MEMBER_PORT,MEMBER_PORT,... (all on 127.0.0.1)")
    parser.add_argument("--pid-file", type=Path)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if args.pid_file:
        args.pid_file.write_text(f"{os.getpid()}\n")
    try:
        serve(args.switch)
    finally:
        if args.pid_file:
            args.pid_file.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
