"""`spark-cluster`: one front door over pyinfra and pytest for a cluster's
whole lifecycle. Each subcommand starts the tool that does the work (pyinfra
on a deploy file of the checkout, pytest on tests/verify, `python -m lab`)
with one inventory, one set of --data overrides and one sudo password for all.
"""

from __future__ import annotations

import argparse
import getpass
import ipaddress
import json
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterable

from spark_cluster.inventory import SUDO_PASSWORD_ENV  # every child reads the password there, never in argv
from spark_cluster.lost_nodes import RERUN_ENV
from spark_cluster.private_file import read_password_file

from .checkout import require_checkout

DEFAULT_INVENTORY = "inventory/spark2.py"
REPORTS = "reports"
# Subcommand -> (deploy file at the checkout's root, one line of help).
PYINFRA_COMMANDS = {
    "deploy": ("deploy.py", "converge every node to a serving cluster (pyinfra deploy.py)"),
    "stop": ("stop.py", "stop serving everywhere: the watchers first, then the engines"),
    "start": ("start.py", "start serving: workers, head, watchers; wait for an answer"),
    "restart": ("restart.py", "stop, then start, cluster-wide"),
    "uninstall": ("uninstall.py", "remove what the deploy installed (keeps model and images)"),
}
NODE_COMMANDS = {
    "status": "each node's serving state, model, image, rails, uptime",
    "logs": "every node's engine log, also after a crash (--follow)",
    "smoke": "one chat completion; tokens/s alone and at small concurrency",
}
VERIFY_HELP = "check the cluster (pytest tests/verify): table, JUnit, JSON"
LAB_HELP = "the qemu lab that imitates Sparks (python -m lab ARGS)"


class Refusal(Exception):
    """A one-line reason not to run, printed as `spark-cluster: ...` (exit 2)."""


# --- options -----------------------------------------------------------------

def _cluster_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("the cluster (the same for every subcommand)")
    group.add_argument("-i", "--inventory", default=DEFAULT_INVENTORY,
                       help=f"pyinfra inventory of the cluster (default {DEFAULT_INVENTORY}, in the checkout)")
    group.add_argument("--data", action="append", default=[], metavar="KEY=VALUE",
                       help="override a group_data setting, as pyinfra's --data (repeatable)")
    group.add_argument("--group-data", action="append", default=[], metavar="DIR",
                       help="read group_data from this folder too, as pyinfra's --group-data (repeatable)")
    group.add_argument("--ask-sudo-password", action="store_true",
                       help="ask the nodes' sudo password once, for every step of this run")
    group.add_argument("--sudo-password-file", metavar="FILE",
                       help="read the nodes' sudo password from FILE's first line (mode 600)")
    return common


def _pyinfra_options(parser: argparse.ArgumentParser, limit: bool) -> None:
    parser.add_argument("-y", "--yes", action="store_true",
                        help="run the operations without pyinfra's confirmation prompt")
    # stop/start/restart move the whole cluster together: a head alone cannot serve.
    if limit:
        parser.add_argument("--limit", action="append", default=[], metavar="NODE",
                            help="only these nodes (pyinfra's --limit; repeatable)")


class _SubcommandFormatter(argparse.HelpFormatter):
    """One line per subcommand, its name and help side by side: argparse measures the
    subcommands' names at the section's indent but draws them one level deeper, so the
    longest ("uninstall") wrapped."""

    def add_argument(self, action):
        super().add_argument(action)
        if isinstance(action, argparse._SubParsersAction):
            indent = self._current_indent + self._indent_increment
            for choice in action._get_subactions():
                self._action_max_length = max(self._action_max_length, indent + len(choice.dest))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spark-cluster",
        formatter_class=_SubcommandFormatter,
        description="Provision, check and run a DGX Spark serving cluster (over pyinfra and pytest).",
        epilog="Runs from a checkout of the repository; `spark-cluster SUBCOMMAND --help` for its options.")
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)
    common = _cluster_options()
    for name in ("deploy",):
        _pyinfra_options(sub.add_parser(name, parents=[common], help=PYINFRA_COMMANDS[name][1],
                                        description=PYINFRA_COMMANDS[name][1]), limit=True)
    sub.add_parser("verify", parents=[common], help=VERIFY_HELP, description=VERIFY_HELP + "; other arguments go to pytest")
    for name, line in NODE_COMMANDS.items():
        command = sub.add_parser(name, parents=[common], help=line, description=line)
        if name == "logs":
            command.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
            command.add_argument("--watcher", action="store_true",
                                 help="the watcher unit's journal instead of the engine's log")
            command.add_argument("-n", "--lines", type=int, default=50, metavar="N",
                                 help="last N lines of each node (default 50)")
    for name in ("stop", "start", "restart", "uninstall"):
        command = sub.add_parser(name, parents=[common], help=PYINFRA_COMMANDS[name][1],
                                 description=PYINFRA_COMMANDS[name][1])
        _pyinfra_options(command, limit=name == "uninstall")
        if name == "uninstall":
            command.add_argument("--remove-model", action="store_true",
                                 help="also delete the model from every node's Hugging Face cache")
            command.add_argument("--remove-images", action="store_true",
                                 help="also delete the engine images from every node")
    lab = sub.add_parser("lab", help=LAB_HELP, description=LAB_HELP, add_help=False)
    lab.add_argument("lab_args", nargs=argparse.REMAINDER, help="arguments of python -m lab")
    return parser


# --- what every child shares -------------------------------------------------

def sudo_password(args, prompt: Callable[[str], str] | None = None) -> str | None:
    """The run's sudo password, asked or read once: --sudo-password-file, then
    --ask-sudo-password, then an exported SPARK_SUDO_PASSWORD; None otherwise
    (the inventory's sudo_password, or NOPASSWD sudo)."""
    if args.sudo_password_file:
        try:
            return read_password_file(args.sudo_password_file)
        except ValueError as error:
            raise Refusal(str(error)) from None
    if args.ask_sudo_password:
        return (prompt or getpass.getpass)("sudo password for the nodes: ")
    return os.environ.get(SUDO_PASSWORD_ENV) or None


def child_env(password: str | None, environ=None) -> dict[str, str]:
    env = dict(os.environ if environ is None else environ)
    if password:
        env[SUDO_PASSWORD_ENV] = password
    return env


def resolve(path: str, root: Path, cwd: Path | None = None) -> str:
    """A path the user typed, for a child that runs in the checkout: as typed
    from where they are when it is there, else inside the checkout
    (the default inventory/spark2.py)."""
    typed = Path(os.path.expanduser(path))
    if typed.is_absolute():
        return str(typed)
    here = Path(cwd or os.getcwd()) / typed
    return str(here.resolve()) if here.exists() else str(root / typed)


def overrides(args, root: Path) -> list[str]:
    """The --data and --group-data arguments every child gets alike."""
    argv = []
    for pair in args.data:
        argv += ["--data", pair]
    for folder in args.group_data:
        argv += ["--group-data", resolve(folder, root)]
    return argv


def pyinfra_argv(args, root: Path, deploy_file: str, python: str = sys.executable) -> list[str]:
    argv = [python, "-m", "pyinfra"]
    if args.yes:
        argv.append("-y")
    for node in getattr(args, "limit", []):
        argv += ["--limit", node]
    argv += overrides(args, root)
    if getattr(args, "remove_model", False):
        argv += ["--data", "uninstall_remove_model=True"]
    if getattr(args, "remove_images", False):
        argv += ["--data", "uninstall_remove_images=True"]
    return argv + [resolve(args.inventory, root), deploy_file]


def verify_argv(args, root: Path, extra: Iterable[str] = (), python: str = sys.executable) -> list[str]:
    return [python, "-m", "pytest", "tests/verify", "-p", "no:cacheprovider",
            "--inventory", resolve(args.inventory, root), *overrides(args, root),
            "--junitxml", f"{REPORTS}/verify.xml", "--report-json", f"{REPORTS}/verify.json", *extra]


# --- the controller must not be a node ---------------------------------------

def can_bind(address: str) -> bool:
    """Whether this machine holds `address`: binding a UDP socket to it works
    only for a local address (nothing is sent). A name is resolved first."""
    try:
        infos = socket.getaddrinfo(address, None, type=socket.SOCK_DGRAM)
    except OSError:
        return False
    for family, kind, proto, _, sockaddr in infos:
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.bind((sockaddr[0], 0))
                return True
        except OSError:
            continue
    return False


def _is_loopback(address: str) -> bool:
    if address.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def controller_nodes(hosts: list[tuple[str, dict]], is_local: Callable[[str], bool] = can_bind) -> list[tuple[str, str]]:
    """[(node, address)] for the nodes this machine is: their management or
    QSFP address is one of its own. Loopback addresses never count (the lab's
    nodes are forwarded ports on 127.0.0.1)."""
    found = []
    for name, data in hosts:
        for address in dict.fromkeys(a for a in (data.get("ssh_hostname"), data.get("qsfp_ip")) if a):
            if not _is_loopback(str(address)) and is_local(str(address)):
                found.append((name, str(address)))
                break
    return found


def refuse_controller_node(args, root: Path, is_local: Callable[[str], bool] | None = None) -> None:
    from spark_cluster.inventory import load_hosts

    try:
        hosts = load_hosts(resolve(args.inventory, root), root, args.data,
                           [resolve(folder, root) for folder in args.group_data])
    except Exception as error:  # the same complaint pyinfra would make, before it connects
        raise Refusal(f"cannot load inventory {args.inventory}: {error}") from None
    local = controller_nodes(hosts, is_local or can_bind)
    if local:
        nodes = ", ".join(f"{name} ({address})" for name, address in local)
        raise Refusal(f"this machine is a node of the cluster: {nodes}; the deploy reboots nodes and restarts "
                      "their network, which would cut its own run: deploy from another machine (a laptop or "
                      "a server that reaches every node's ssh_hostname)")


# --- subcommands -------------------------------------------------------------

def _run(argv: list[str], root: Path, env: dict[str, str]) -> int:
    print("spark-cluster: " + " ".join(argv[1:] if argv[0] == sys.executable else argv), file=sys.stderr)
    return subprocess.run(argv, cwd=root, env=env).returncode


def run_pyinfra(args, root: Path, env: dict[str, str]) -> int:
    deploy_file = PYINFRA_COMMANDS[args.command][0]
    if not (root / deploy_file).is_file():
        raise Refusal(f"{root / deploy_file} is missing: this checkout has no `{args.command}`; update it (git pull)")
    if args.command == "deploy":
        refuse_controller_node(args, root)
    # A node lost mid-run is named at the end with the command to run again: this one, not pyinfra's.
    env = {**env, RERUN_ENV: shlex.join(["spark-cluster", *args.command_line])}
    return _run(pyinfra_argv(args, root, deploy_file), root, env)


def verify_table(report: Path) -> str | None:
    """The verify suite's check-by-node table, from its JSON report."""
    if not report.is_file():
        return None
    sys.path.insert(0, str(report.parents[1] / "tests" / "verify"))
    from sparkverify.report import CheckResult, format_summary

    document = json.loads(report.read_text())
    results = [CheckResult(**{k: v for k, v in row.items() if k in CheckResult.__dataclass_fields__})
               for row in document.get("results", [])]
    nodes = list(dict.fromkeys(result.node for result in results if result.node != "cluster"))
    return format_summary(results, nodes)


def run_verify(args, root: Path, env: dict[str, str], extra: list[str]) -> int:
    report = root / REPORTS / "verify.json"
    report.unlink(missing_ok=True)  # a table from an earlier run would be a lie
    rc = _run(verify_argv(args, root, extra), root, env)
    table = verify_table(report)
    if table:
        print("\n" + table)
        print(f"reports: {root / REPORTS / 'verify.xml'} (JUnit XML), {report} (JSON)")
    return rc


def run_nodes(args) -> int:
    from . import nodes  # written beside this module; imported only when used

    return getattr(nodes, args.command)(args)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    args.command_line = list(sys.argv[1:] if argv is None else argv)
    if extra and args.command not in ("verify", "lab"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    root = require_checkout()
    try:
        if args.command == "lab":
            return _run([sys.executable, "-m", "lab", *args.lab_args, *extra], root, dict(os.environ))
        # Paths as the user typed them, made absolute once: every child runs in the checkout.
        args.inventory = resolve(args.inventory, root)
        args.group_data = [resolve(folder, root) for folder in args.group_data]
        args.checkout = root
        args.sudo_password = sudo_password(args)
        env = child_env(args.sudo_password)
        if args.command == "verify":
            return run_verify(args, root, env, extra)
        if args.command in NODE_COMMANDS:
            return run_nodes(args)
        return run_pyinfra(args, root, env)
    except Refusal as refusal:
        print(f"spark-cluster: {refusal}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
