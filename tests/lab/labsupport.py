"""Driving the lab and pyinfra from tests: subprocesses, as a user would."""

from __future__ import annotations

import json
import re
import runpy
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from lab import api_key_path
from lab.nodes import console_tail
from lab.state import node_index

REPO = Path(__file__).resolve().parents[2]
LAB_SUDO_PASSWORD = "spark"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def run(argv, timeout, input_text=None, check=False):
    result = subprocess.run(
        argv, cwd=REPO, capture_output=True, text=True, timeout=timeout, input=input_text
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{shlex.join(map(str, argv))} exited {result.returncode}\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}{console_when_unreachable(argv, result.returncode)}"
        )
    return result


def console_when_unreachable(argv, returncode) -> str:
    """The node's last console lines when ssh could not reach it (255): a
    hung or panicked VM says why only there."""
    words = [str(word) for word in argv]
    if returncode != 255 or "ssh" not in words[:4]:
        return ""
    node = words[words.index("ssh") + 1]
    try:
        index = node_index(node)
    except ValueError:
        return ""
    return f"\n--- last lines of {node}'s console ---\n{console_tail(index, 60)}"


def lab(*args, timeout=900, check=True):
    return run([sys.executable, "-m", "lab", *args], timeout=timeout, check=check)


def on_node(node, command, timeout=120, check=True):
    """Runs `command` as the admin user on a lab node."""
    return run([sys.executable, "-m", "lab", "ssh", node, command], timeout=timeout, check=check)


def as_root(node, command, timeout=180, check=True):
    """Runs `command` as root; the password goes over stdin, never on a command line."""
    wrapped = f"sudo -S -p '' sh -c {shlex.quote(command)}"
    return run(
        [sys.executable, "-m", "lab", "ssh", node, wrapped],
        timeout=timeout,
        input_text=LAB_SUDO_PASSWORD + "\n",
        check=check,
    )


def facts_per_node(output: str) -> dict[str, int]:
    """{node: facts it answered}, from pyinfra -v ("[spark-1] Loaded fact ...")."""
    counts: dict[str, int] = {}
    for node in re.findall(r"\[([\w.-]+)\] Loaded fact", output):
        counts[node] = counts.get(node, 0) + 1
    return counts


@dataclass
class DeployResult:
    returncode: int
    output: str

    def grand_total(self) -> dict[str, int]:
        """pyinfra's closing table: Hosts, Success (= changed), Error, No Change."""
        match = re.search(r"Grand total\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", self.output)
        if not match:
            raise AssertionError(f"no pyinfra results table in output:\n{self.output[-3000:]}")
        hosts, changed, errors, unchanged = (0 if v == "-" else int(v) for v in match.groups())
        return {"hosts": hosts, "changed": changed, "errors": errors, "unchanged": unchanged}

    def facts_per_node(self) -> dict[str, int]:
        """{node: facts it answered (SSH round trips)}, from pyinfra -v ("[spark-1] Loaded fact ...")."""
        return facts_per_node(self.output)

    def host_lines(self, host: str) -> list[str]:
        return [line.strip() for line in self.output.splitlines() if f"[{host}]" in line]

    def changed_operations(self, host: str) -> list[str]:
        """Names of the operations that ran a command on `host` ("Success" in pyinfra's log)."""
        changed, current = [], None
        for line in ANSI.sub("", self.output).splitlines():
            started = re.search(r"--> Starting (?:[\w ,]+ )?operation: (.*)$", line)
            if started:
                current = started.group(1).strip()
            elif re.search(rf"\[{re.escape(host)}\]\s+Success", line):
                changed.append(current)
        return changed


def deploy(inventory: str, *extra: str, timeout=2400) -> DeployResult:
    result = run(
        [sys.executable, "-m", "pyinfra", "-y", inventory, "deploy.py", *extra], timeout=timeout
    )
    return DeployResult(result.returncode, result.stdout + result.stderr)


def verify(inventory: str, report: Path, *select: str, timeout=900) -> tuple[int, list[dict], str]:
    """The verification suite as a user runs it; `select` narrows it (e.g. "-k", "memlock and spark-2")."""
    result = run(
        [
            sys.executable, "-m", "pytest", "tests/verify", "-p", "no:cacheprovider", "-q",
            "--inventory", inventory, "--report-json", str(report), *select,
        ],
        timeout=timeout,
    )
    entries = json.loads(report.read_text()) if report.exists() else []
    if isinstance(entries, dict):
        entries = entries.get("results", [])
    return result.returncode, entries, result.stdout + result.stderr


def failed_checks(entries: list[dict]) -> set[tuple[str, str]]:
    return {(e["node"], e["check"]) for e in entries if e["outcome"] == "failed"}


def outcomes(entries: list[dict]) -> dict[tuple[str, str], tuple[str, str]]:
    """(node, check) -> (outcome, message) of one verify report."""
    return {(e["node"], e["check"]): (e["outcome"], e.get("message", "")) for e in entries}


def group_data() -> dict:
    """group_data/all.py's values, as pyinfra reads them."""
    values = runpy.run_path(str(REPO / "group_data" / "all.py"))
    return {key: value for key, value in values.items() if not key.startswith("_")}


def boot_count(node: str) -> int:
    """Lines in the lab's boot log: one per boot of this node's disk."""
    out = on_node(node, "cat /var/log/lab-boots").stdout
    return len([line for line in out.splitlines() if line.strip()])


def wait_for(predicate, timeout: float, interval: float = 5.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as error:  # the node may be rebooting
            last = error
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


# The head's API listens on its QSFP address (api_listen = "qsfp"), the lab's first rail.
HEAD_API = "http://192.168.100.10:8000"


def health_probe(api: str = HEAD_API) -> str:
    return ("python3 -c \"import urllib.request,sys;"
            f"sys.exit(0 if urllib.request.urlopen('{api}/health', timeout=5).status == 200 else 1)\"")


def head_healthy(head: str, api: str = HEAD_API) -> bool:
    return on_node(head, health_probe(api), check=False).returncode == 0


def tree_digest(node: str, path: str, leave_out: tuple[str, ...] = ()) -> str:
    """Names, sizes, link targets and contents of a tree: equal digests mean
    identical trees; `leave_out`: find -path globs (./...) not counted."""
    q = shlex.quote(path)
    skip = "".join(f" ! -path {shlex.quote(glob)}" for glob in leave_out)
    command = (
        f"cd {q} && {{ find . \\( -type f -o -type l \\){skip} -printf '%P %s %l\\n' | LC_ALL=C sort; "
        f"find . -type f{skip} -print0 | LC_ALL=C sort -z | xargs -0 sha256sum; }} | sha256sum"
    )
    return on_node(node, command).stdout.split()[0]


def container_started_at(node: str) -> str:
    out = as_root(node, "docker inspect -f '{{.State.StartedAt}}' spark-serving").stdout.strip()
    assert out, f"no spark-serving container on {node}"
    return out


def image_id(node: str, image: str) -> str:
    return as_root(node, f"docker image inspect -f '{{{{.Id}}}}' {shlex.quote(image)}").stdout.strip()


# One chat completion of the head's API, asked on a node over QSFP; the key
# (if the lab has one) comes on stdin, never in an argv.
CHAT_PROBE = r"""
import json, sys, urllib.error, urllib.request
key = sys.stdin.readline().strip()
request = urllib.request.Request(sys.argv[1] + "/v1/chat/completions", method="POST",
    headers={"Content-Type": "application/json", **({"Authorization": "Bearer " + key} if key else {})},
    data=json.dumps({"model": sys.argv[2], "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}).encode())
try:
    with urllib.request.urlopen(request, timeout=float(sys.argv[3])) as r:
        print(r.status, len(json.load(r).get("choices") or []))
except urllib.error.HTTPError as e:
    print(e.code, 0)
except Exception as e:
    print("error", type(e).__name__)
"""


def lab_api_key() -> str:
    path = api_key_path()
    return path.read_text().strip() if path.exists() else ""


def chat_answer(node: str, api: str = HEAD_API, model: str = "deepseek-v4-flash",
                timeout: float = 10, key: str | None = None) -> str:
    """"200 1" when a completion came back; else the status or error, as the probe printed it."""
    key = lab_api_key() if key is None else key
    command = f"python3 -c {shlex.quote(CHAT_PROBE)} {api} {model} {timeout}"
    result = run([sys.executable, "-m", "lab", "ssh", node, command], timeout=timeout + 60, input_text=key + "\n")
    return result.stdout.strip()


def chat_works(node: str) -> bool:
    return chat_answer(node) == "200 1"


def journal(node: str, unit: str, since: str) -> str:
    """The unit's journal lines since `since` (a `date` string of the node)."""
    return as_root(node, f"journalctl -u {unit} -o cat --since {shlex.quote(since)}").stdout


def node_now(node: str) -> str:
    return on_node(node, "date '+%Y-%m-%d %H:%M:%S'").stdout.strip()


def deploy_losing(inventory: str, node: str, marker: str, *extra: str, timeout=2400) -> tuple[DeployResult, str]:
    """A deploy during which `node` is powered off: its qemu is killed (SIGKILL,
    by the pid in its pid file, as a power cut would) as soon as a line of the
    deploy's output matches `marker` (a regex, searched without ANSI colours).
    Returns the deploy's result and the line that triggered the kill."""
    import os
    import signal
    import threading

    from lab.nodes import running_pid

    pattern = re.compile(marker)
    index = node_index(node)
    process = subprocess.Popen(
        [sys.executable, "-m", "pyinfra", "-y", inventory, "deploy.py", *extra],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    # A deploy that hangs without printing still ends: the watchdog kills it.
    watchdog = threading.Timer(timeout, process.kill)
    watchdog.start()
    lines: list[str] = []
    killed_at = None
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            plain = ANSI.sub("", line).strip()
            if killed_at is None and pattern.search(plain):
                pid = running_pid(index)
                if pid is None:
                    raise AssertionError(f"{node}'s VM was not running when {plain!r} appeared")
                os.kill(pid, signal.SIGKILL)
                killed_at = plain
        process.wait()
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()
    output = "".join(lines)
    if killed_at is None:
        raise AssertionError(f"the deploy never printed {marker!r}; {node} was not killed:\n{output[-6000:]}")
    return DeployResult(process.returncode, output), killed_at
