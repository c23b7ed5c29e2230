"""`python -m lab COMMAND`: the lab's command line."""

from __future__ import annotations

import argparse
import os
import sys

from . import accel, bootwait, cx7, image, lab, plant, ssh, state
from .errors import LabError


TIMEOUT_HELP = (
    "seconds one VM gets to answer SSH on an idle host (default "
    f"{bootwait.BASE_S[accel.TCG]:.0f} under tcg, {bootwait.BASE_S[accel.KVM]:.0f} under kvm; "
    "env SPARK_LAB_BOOT_TIMEOUT); scaled by VMs booting and host load per CPU, extended while "
    f"a VM's console grows, at most {bootwait.CEILING_S:.0f}s")
ACCEL_HELP = (f"qemu accelerator (default: env {accel.ENV}, else auto: kvm when /dev/kvm works, "
              "else tcg)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lab",
        description="qemu VMs that look like fresh DGX Sparks (state in .lab/, or SPARK_LAB_DIR)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="build or reuse the image, start the VMs, wait for SSH")
    up.add_argument("--nodes", type=int, choices=state.SUPPORTED_SIZES, default=2)
    up.add_argument("--timeout", type=float, help=TIMEOUT_HELP)
    up.add_argument("--accel", choices=accel.CHOICES + (accel.AUTO,), help=ACCEL_HELP)
    up.add_argument("--cables", choices=sorted(cx7.CABLES),
                    help="which QSFP ports have a cable: port1 (one cable, the README's setup) or both; "
                         f"kept for restarts and rebuilds (default: as last time, else {cx7.DEFAULT_CABLES})")
    down = commands.add_parser("down", help="stop every VM and the switch; keep the disks")
    down.add_argument("--force", action="store_true", help="power off at once, no clean shutdown")
    commands.add_parser("destroy", help="down, then delete the disks and state (not the image)")
    commands.add_parser("status", help="per node: running, ssh port, reachable")
    connect = commands.add_parser("ssh", help="ssh to a node as the admin user")
    connect.add_argument("node")
    connect.add_argument("cmd", nargs=argparse.REMAINDER)
    rebuild = commands.add_parser("rebuild", help="reinstall one node from the base image")
    rebuild.add_argument("node")
    rebuild.add_argument("--timeout", type=float, help=TIMEOUT_HELP)
    rebuild.add_argument("--accel", choices=accel.CHOICES + (accel.AUTO,), help=ACCEL_HELP)
    planted = commands.add_parser(
        "plant-nvidia", help="configure a running node as NVIDIA's playbook leaves it "
        "(/etc/netplan/40-cx7.yaml and NetworkManager profiles on port 1's two halves)")
    planted.add_argument("node")
    build = commands.add_parser("build-image", help="build (or confirm the cached) base image")
    build.add_argument("--force", action="store_true", help="rebuild even if cached")
    return parser


def run(args: argparse.Namespace) -> int:
    if args.command == "up":
        lab.up(args.nodes, args.timeout, cables=args.cables, accel=args.accel)
    elif args.command == "down":
        lab.down(force=args.force)
    elif args.command == "destroy":
        lab.destroy()
    elif args.command == "status":
        lab.status()
    elif args.command == "ssh":
        index = lab._index_of(args.node)
        argv = ssh.ssh_argv(index, args.cmd or None, batch=False)
        if not args.cmd:
            argv.insert(1, "-t")
        sys.stdout.flush()
        os.execv(argv[0], argv)
    elif args.command == "rebuild":
        lab.rebuild(args.node, args.timeout, accel=args.accel)
    elif args.command == "plant-nvidia":
        lab._index_of(args.node)
        plant.plant_nvidia(args.node)
    elif args.command == "build-image":
        built = image.ensure_image(force=args.force)
        print(built.directory)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except LabError as error:
        print(f"lab: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lab: interrupted", file=sys.stderr)
        return 130
