"""Model distribution over network namespaces (issue 16, item 7; a benchmark, not a test).

One machine plays a cluster: network namespaces `head`, `r1`, `r2`, `r3` joined
by a Linux bridge in a namespace of its own (the switch) through veth pairs,
addresses in 10.250.R.0/24 (one subnet per rail) inside the namespaces only.
Each node has a tmpfs holding its Hugging Face cache; the head's holds a
synthetic model in the hub's layout (256 MiB shards of random bytes and the
small files, blobs plus snapshot links). An sshd runs in every namespace with
its own host key, and every copy checks host keys (StrictHostKeyChecking=yes).

Measured, each as wall seconds, GiB/s and CPU seconds per GB moved:
  raw     iperf3 head -> r1: the path's limit
  today   `rsync -a` over ssh (default cipher) pulled by 1 receiver, then by 3 at once (the star)
  cipher  `rsync -a -W`, one stream, default cipher vs aes128-gcm vs chacha20-poly1305
  new     spark_cluster/files/tree_copy.py: 1 receiver, then the chain head -> r1 -> r2 -> r3
  shaped  every node's egress shaped (tc tbf) so the link is the limit: t(3)/t(1), star vs chain
Every copy is verified (listing with sizes and link targets, sha256 of sample
files) before its figure counts. CPU: busy time of the whole machine from
/proc/stat (both ends share this machine's cores), and the bench's own
processes alone from a cpuacct cgroup (other work on the machine excluded).

    sudo .venv/bin/python bench/distribution_bench.py [--gib 3] [--markdown FILE]
    sudo .venv/bin/python bench/distribution_bench.py --cleanup    # leftovers of a killed run

Needs root, iproute2 (ip, tc), and: apt-get install -y openssh-server rsync iperf3
(the bench runs its own sshd processes; the system's sshd need not run).
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from spark_cluster.cluster_ssh import SYSTEM_KNOWN_HOSTS  # noqa: E402
from spark_cluster.copy_plan import (copy_argv, listing_command, model_entries, parse_listing,  # noqa: E402
                                     peer_addresses, upstreams)
from spark_cluster.copy_ssh import COPY_CIPHER, copy_key, copy_ssh_argv  # noqa: E402
from spark_cluster.schema import SETTINGS  # noqa: E402

PREFIX = "scbench-"
NODES = ("head", "r1", "r2", "r3")
RECEIVERS = NODES[1:]
MODEL = "hub/models--bench--synthetic"
REVISION = "5f1c0ffee0ddba11deadbeef0123456789abcdef"
CHACHA = "chacha20-poly1305@openssh.com"
MIB = 1 << 20
GIB = 1 << 30
GB = 10 ** 9
TOOLS = {"sshd": "openssh-server", "ssh": "openssh-client", "ssh-keygen": "openssh-client",
         "rsync": "rsync", "iperf3": "iperf3", "ip": "iproute2", "tc": "iproute2"}
CGROUP_ROOT = Path("/sys/fs/cgroup/cpuacct")
# The hub's small files beside the shards: (name, bytes).
SMALL_FILES = (("config.json", 2_300), ("generation_config.json", 250), ("tokenizer.json", 7 * MIB),
               ("tokenizer_config.json", 52_000), ("special_tokens_map.json", 600),
               ("model.safetensors.index.json", 95_000), ("chat_template.jinja", 4_000))
# The deploy's streams per rail (group_data's default).
STREAMS_PER_RAIL = next(s.default for s in SETTINGS if s.key == "distribute_streams_per_rail")


# ---------------------------------------------------------------- pure parts

@dataclass(frozen=True)
class Layout:
    """Names, addresses and paths of one run (its pid keeps runs apart)."""
    pid: int
    rails: int = 1

    def ns(self, node: str) -> str:
        return f"{PREFIX}{self.pid}-{node}"

    @property
    def switch(self) -> str:
        return self.ns("sw")

    def address(self, node: str, rail: int = 0) -> str:
        return f"10.250.{rail}.{NODES.index(node) + 1}"

    def addresses(self, node: str) -> list[str]:
        return [self.address(node, rail) for rail in range(self.rails)]

    @property
    def root(self) -> Path:
        return Path(f"/tmp/{PREFIX}{self.pid}")

    def cache(self, node: str) -> Path:
        return self.root / node

    def model(self, node: str) -> Path:
        return self.cache(node) / MODEL


def tree_plan(gib: float, shard_mib: int = 256) -> list[dict]:
    """The synthetic model's entries in copy order, as the copy script's list file
    holds them: blobs (shards first, largest work first), then the snapshot's
    links into them, then refs/main. Blob names are sha-like, fixed by the name."""
    shards = max(1, round(gib * 1024 / shard_mib))
    named = [(f"model-{i:05d}-of-{shards:05d}.safetensors", shard_mib * MIB) for i in range(1, shards + 1)]
    named += list(SMALL_FILES)
    blobs = [(name, size, hashlib.sha256(f"{REVISION}/{name}".encode()).hexdigest()) for name, size in named]
    entries: list[dict] = [{"path": f"blobs/{blob}", "size": size} for _, size, blob in blobs]
    entries += [{"path": f"snapshots/{REVISION}/{name}", "link": f"../../blobs/{blob}"} for name, _, blob in blobs]
    entries.append({"path": "refs/main", "size": len(REVISION)})
    return entries


def busy_jiffies(proc_stat: str) -> int:
    """Busy time of all CPUs from /proc/stat's first line: user, nice, system,
    irq, softirq and steal (guest time is already inside user)."""
    fields = proc_stat.splitlines()[0].split()
    assert fields[0] == "cpu", f"/proc/stat: expected the 'cpu' line first, found {fields[:1]}"
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    return user + nice + system + irq + softirq + steal


def memory_available(meminfo: str) -> int:
    """Bytes of MemAvailable in /proc/meminfo (every node's tree lives in memory, on tmpfs)."""
    for line in meminfo.splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise ValueError("/proc/meminfo: no MemAvailable line")


def tree_listing(root: Path) -> list[tuple]:
    """Every entry under `root`, sorted: (path, 'f', size), (path, 'l', target) or (path, 'd')."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                found.append((rel, "l", os.readlink(path)))
            elif path.is_dir():
                found.append((rel, "d"))
            else:
                found.append((rel, "f", path.stat().st_size))
    return sorted(found)


def listing_difference(expected: list[tuple], found: list[tuple], limit: int = 5) -> str:
    """'' when the listings match, else what is missing and what is extra (a few of each)."""
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    if not missing and not extra:
        return ""
    return f"missing or different {missing[:limit]} ({len(missing)}), extra {extra[:limit]} ({len(extra)})"


def last_result(output: str) -> dict | None:
    """The copy script's last `result {json}` line, or None."""
    results = [line[len("result "):] for line in output.splitlines() if line.startswith("result ")]
    return json.loads(results[-1]) if results else None


@dataclass
class Figure:
    """One measured row."""
    section: str
    method: str
    receivers: int
    seconds: float
    bytes_moved: int          # bytes delivered to all receivers together
    machine_cpu_s: float      # busy CPU seconds of the whole machine
    bench_cpu_s: float | None  # CPU seconds of the bench's own processes (cgroup), None when unavailable
    verified: str = "yes"
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def gib_per_s(self) -> float:
        return self.bytes_moved / GIB / self.seconds

    def per_gb(self, cpu_s: float | None) -> str:
        return "n/a" if cpu_s is None else f"{cpu_s / (self.bytes_moved / GB):.2f}"


def figures_table(figures: list[Figure]) -> str:
    lines = ["| section | method | receivers | wall s | GiB/s (all receivers) | CPU s/GB, machine | "
             "CPU s/GB, bench only | verified |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for f in figures:
        note = f" ({f.note})" if f.note else ""
        lines.append(f"| {f.section} | {f.method}{note} | {f.receivers} | {f.seconds:.1f} | {f.gib_per_s:.2f} | "
                     f"{f.per_gb(f.machine_cpu_s)} | {f.per_gb(f.bench_cpu_s)} | {f.verified} |")
    return "\n".join(lines)


def scaling_rows(figures: list[Figure], shape_mbit: int) -> list[tuple[str, float, float, float, float]]:
    """(method, t(1), t(3), t(3)/t(1), one receiver's rate as a share of the shaped rate)
    for each method measured shaped with both 1 and 3 receivers."""
    shaped = [f for f in figures if f.section == "shaped" and f.receivers in (1, 3) and f.method != "iperf3"]
    rows = []
    for method in dict.fromkeys(f.method for f in shaped):
        times = {f.receivers: f for f in shaped if f.method == method}
        if 1 in times and 3 in times:
            one, three = times[1], times[3]
            share = one.bytes_moved * 8 / one.seconds / (shape_mbit * 1e6)
            rows.append((method, one.seconds, three.seconds, three.seconds / one.seconds, share))
    return rows


def scaling_table(figures: list[Figure], shape_mbit: int) -> str:
    rows = scaling_rows(figures, shape_mbit)
    if not rows:
        return ""
    lines = [f"| shaped to {shape_mbit} Mbit/s per node | t(1) s | t(3) s | t(3)/t(1) | 1 receiver, share of the shaped rate |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {m} | {t1:.1f} | {t3:.1f} | {ratio:.2f} | {share:.0%} |" for m, t1, t3, ratio, share in rows]
    return "\n".join(lines)


# ------------------------------------------------------------ the machinery

def sh(*argv: str, check: bool = True, ns: str | None = None, timeout: float | None = None) -> str:
    full = (["ip", "netns", "exec", ns] if ns else []) + list(argv)
    result = subprocess.run(full, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"bench: `{shlex.join(full)}` exited {result.returncode}: "
                           f"{(result.stdout + result.stderr)[-2000:]}")
    return result.stdout


class Bench:
    def __init__(self, layout: Layout, args: argparse.Namespace):
        self.layout, self.args = layout, args
        self.started: list[int] = []      # pids of the sshd/iperf3/copies this run started
        self.mounts: list[Path] = []
        self.cgroup: Path | None = None
        self.sshd_dir = layout.root / "ssh"
        self.home = layout.root / "home"  # the key lives where copy_ssh expects the admin's
        self.known_hosts = self.sshd_dir / "known_hosts"
        self.entries = tree_plan(args.gib, args.shard_mib)
        self.tree_bytes = sum(e.get("size", 0) for e in self.entries)
        self.figures: list[Figure] = []
        self.log = layout.root.with_name(layout.root.name + ".log")

    # -- bookkeeping

    def note(self, text: str) -> None:
        print(text, flush=True)
        with open(self.log, "a") as log:
            log.write(text + "\n")

    def remember(self, pid: int) -> None:
        self.started.append(pid)

    def spawn(self, ns: str, argv: list[str], out=subprocess.PIPE) -> subprocess.Popen:
        """A process in namespace `ns`, leading its own process group (so a timeout ends its ssh too)."""
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdout=out, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
        self.remember(proc.pid)
        return proc

    # -- set up

    def setup(self) -> None:
        lay = self.layout
        lay.root.mkdir(mode=0o700)
        for node in NODES:
            path = lay.cache(node)
            path.mkdir()
            sh("mount", "-t", "tmpfs", "-o", f"size={int(self.tree_bytes * 1.05 + 64 * MIB)}",
               f"{PREFIX}{lay.pid}", str(path))
            self.mounts.append(path)
        self.join_cgroup()
        self.network()
        self.make_tree()
        self.ssh_setup()

    def join_cgroup(self) -> None:
        """Put this process (and so every child) in a cpuacct cgroup of its own, to
        count the bench's CPU apart from whatever else runs on the machine."""
        if not (CGROUP_ROOT / "cpuacct.usage").exists():
            self.note("bench: no cpuacct cgroup (cgroup v1) here: the 'bench only' CPU column is n/a")
            return
        group = CGROUP_ROOT / f"{PREFIX}{self.layout.pid}"
        group.mkdir()
        (group / "cgroup.procs").write_text(str(os.getpid()))
        self.cgroup = group

    def leave_cgroup(self) -> None:
        if self.cgroup:
            (CGROUP_ROOT / "cgroup.procs").write_text(str(os.getpid()))
            for _ in range(50):
                try:
                    self.cgroup.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)
            self.cgroup = None

    def network(self) -> None:
        lay = self.layout
        for name in (lay.switch, *map(lay.ns, NODES)):
            sh("ip", "netns", "add", name)
            sh("ip", "-n", name, "link", "set", "lo", "up")
        for rail in range(lay.rails):
            bridge = f"br{rail}"
            sh("ip", "-n", lay.switch, "link", "add", bridge, "type", "bridge")
            sh("ip", "-n", lay.switch, "link", "set", bridge, "mtu", str(self.args.mtu), "up")
            for node in NODES:
                port, nic = f"{node}-{rail}", f"eth{rail}"
                # Made inside the namespaces: no interface ever appears on the host.
                sh("ip", "-n", lay.switch, "link", "add", port, "mtu", str(self.args.mtu), "type", "veth",
                   "peer", "name", nic, "mtu", str(self.args.mtu), "netns", lay.ns(node))
                sh("ip", "-n", lay.switch, "link", "set", port, "master", bridge, "up")
                sh("ip", "-n", lay.ns(node), "addr", "add", f"{lay.address(node, rail)}/24", "dev", nic)
                sh("ip", "-n", lay.ns(node), "link", "set", nic, "up")

    def make_tree(self) -> None:
        """The head's model: shards of random bytes (a fresh random MiB per shard,
        each copy of it prefixed with its offset: incompressible, and no two MiB alike)."""
        model = self.layout.model("head")
        for entry in self.entries:
            path = model / entry["path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            if "link" in entry:
                path.symlink_to(entry["link"])
            elif entry["path"] == "refs/main":
                path.write_text(REVISION)
            else:
                block = os.urandom(min(entry["size"], MIB))
                with open(path, "wb") as f:
                    for offset in range(0, entry["size"], MIB):
                        chunk = offset.to_bytes(8, "little") + block[8:]
                        f.write(chunk[:entry["size"] - offset])
        self.expected = tree_listing(model)
        # The list the deploy would send (copy_plan.model_entries of the head's tree): the
        # synthetic tree holds only what the engine reads, so it is the whole tree.
        listing = sh("sh", "-c", listing_command(str(model)))
        listed = model_entries(parse_listing(listing.splitlines()))
        if sorted(e["path"] for e in listed) != sorted(e["path"] for e in self.entries):
            raise RuntimeError("bench: copy_plan.model_entries leaves part of the synthetic tree out: "
                               f"{sorted({e['path'] for e in self.entries} - {e['path'] for e in listed})}")
        self.listed = {"files": listed}
        shards = [e["path"] for e in self.entries if e.get("size", 0) >= MIB]
        self.samples = sorted({shards[0], shards[len(shards) // 2], shards[-1], "refs/main"})
        self.sample_sums = {p: self.sha256(model / p) for p in self.samples}

    @staticmethod
    def sha256(path: Path) -> str:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(4 * MIB):
                digest.update(chunk)
        return digest.hexdigest()

    def ssh_setup(self) -> None:
        lay, d = self.layout, self.sshd_dir
        d.mkdir(mode=0o700)
        key = Path(copy_key(str(self.home)))
        key.parent.mkdir(parents=True, mode=0o700)
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "scbench", "-f", str(key))
        shutil.copy(f"{key}.pub", d / "authorized_keys")
        known = []
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        for node in NODES:
            host_key = d / f"host_{node}"
            sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", node, "-f", str(host_key))
            public = Path(f"{host_key}.pub").read_text().split()[:2]
            known += [f"{name} {' '.join(public)}" for name in (node, *lay.addresses(node))]
            config = d / f"sshd_{node}.conf"
            config.write_text("\n".join([
                *(f"ListenAddress {a}" for a in lay.addresses(node)),
                f"HostKey {host_key}", f"PidFile {d}/sshd_{node}.pid",
                f"AuthorizedKeysFile {d}/authorized_keys",
                "PermitRootLogin prohibit-password", "PasswordAuthentication no",
                "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no", "UseDNS no",
                "MaxSessions 64", "MaxStartups 64:30:128", "", ]))
            self.spawn(lay.ns(node), ["/usr/sbin/sshd", "-D", "-f", str(config), "-E", str(d / f"sshd_{node}.log")],
                       out=subprocess.DEVNULL)
        self.known_hosts.write_text("\n".join(known) + "\n")
        deadline = time.monotonic() + 20
        for node in NODES:
            for address in lay.addresses(node):
                while True:
                    probe = subprocess.run(["ip", "netns", "exec", lay.ns("head"), *self.ssh_argv(), address, "true"],
                                           capture_output=True, text=True)
                    if probe.returncode == 0:
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"bench: sshd at {address} ({node}) did not accept the bench key "
                                           f"within 20 s: {probe.stderr.strip()}; see {d}/sshd_{node}.log")
                    time.sleep(0.2)

    def ssh_argv(self, cipher: str | None = COPY_CIPHER) -> list[str]:
        """The deploy's copy SSH (spark_cluster.copy_ssh), pointed at the bench's known_hosts;
        cipher None: OpenSSH's default choice."""
        argv = copy_ssh_argv(str(self.home), None, cipher or COPY_CIPHER)
        argv = [f"UserKnownHostsFile={self.known_hosts}" if a == f"UserKnownHostsFile={SYSTEM_KNOWN_HOSTS}" else a
                for a in argv]
        if cipher is None:
            at = argv.index("-c")
            del argv[at:at + 2]
        return argv

    # -- measuring

    def cpu_now(self) -> tuple[float, float | None]:
        machine = busy_jiffies(Path("/proc/stat").read_text()) / os.sysconf("SC_CLK_TCK")
        bench = int((self.cgroup / "cpuacct.usage").read_text()) / 1e9 if self.cgroup else None
        return machine, bench

    def background_load(self, seconds: float = 3.0) -> float:
        """Cores the machine keeps busy while the bench idles (other people's work)."""
        before, _ = self.cpu_now()
        time.sleep(seconds)
        after, _ = self.cpu_now()
        return (after - before) / seconds

    def clear(self, receivers=RECEIVERS) -> None:
        for node in receivers:
            shutil.rmtree(self.layout.model(node), ignore_errors=True)
            self.layout.model(node).mkdir(parents=True)

    def verify(self, node: str) -> str:
        """'yes', or what differs from the head's tree."""
        model = self.layout.model(node)
        difference = listing_difference(self.expected, tree_listing(model))
        if difference:
            return f"NO: {node}: {difference}"
        for path, digest in self.sample_sums.items():
            if self.sha256(model / path) != digest:
                return f"NO: {node}: {path} differs (sha256)"
        return "yes"

    def run_copies(self, section: str, method: str, jobs: dict[str, list[str]], note: str = "") -> Figure:
        """Start every receiver's copy at once; wall time until the last ends; verify each."""
        self.clear(jobs)
        tx0 = self.rail_tx()
        cpu0, wall0 = self.cpu_now(), time.monotonic()
        procs = {node: self.spawn(self.layout.ns(node), argv) for node, argv in jobs.items()}
        outputs, failed = {}, []
        deadline = wall0 + self.args.timeout_s
        for node, proc in procs.items():
            try:
                outputs[node], _ = proc.communicate(timeout=max(1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                outputs[node], _ = proc.communicate()
                failed.append(f"{node}: timed out after {self.args.timeout_s}s")
            if proc.returncode:
                failed.append(f"{node}: exit {proc.returncode}: {outputs[node][-1500:]}")
        seconds = time.monotonic() - wall0
        cpu1 = self.cpu_now()
        rails = [after - before for before, after in zip(tx0, self.rail_tx())]
        if self.layout.rails > 1:
            note = ", ".join(filter(None, [note, "rails " + " / ".join(f"{b / GIB:.2f}" for b in rails) + " GiB sent"]))
        verified = "; ".join(failed) or "; ".join(v for v in map(self.verify, jobs) if v != "yes") or "yes"
        results = {node: last_result(out) for node, out in outputs.items()}
        figure = Figure(section, method, len(jobs), seconds, self.tree_bytes * len(jobs), cpu1[0] - cpu0[0],
                        None if cpu1[1] is None else cpu1[1] - cpu0[1], verified, note,
                        {"results": {n: r for n, r in results.items() if r}})
        self.record(figure)
        return figure

    def rail_tx(self) -> list[int]:
        """Bytes all nodes have sent on each rail so far (does a copy use every rail?)."""
        totals = [0] * self.layout.rails
        for node in NODES:
            for rail in range(self.layout.rails):
                totals[rail] += int(sh("cat", f"/sys/class/net/eth{rail}/statistics/tx_bytes", ns=self.layout.ns(node)))
        return totals

    def record(self, figure: Figure) -> None:
        self.figures.append(figure)
        self.note(f"  {figure.section:7} {figure.method}{' (' + figure.note + ')' if figure.note else ''}, "
                  f"{figure.receivers} receiver(s): {figure.seconds:.1f} s, {figure.gib_per_s:.2f} GiB/s, "
                  f"CPU s/GB machine {figure.per_gb(figure.machine_cpu_s)}, bench {figure.per_gb(figure.bench_cpu_s)}"
                  f", verified: {figure.verified}")
        for node, result in figure.extra.get("results", {}).items():
            self.note(f"          {node}: ok {result.get('ok')}, {result.get('seconds')} s, "
                      f"{result.get('rate', 0) / GIB:.2f} GiB/s, {result.get('streams')} streams "
                      f"from {', '.join(result.get('sources', []))}")

    def rsync_argv(self, node: str, cipher: str | None, options: tuple[str, ...]) -> list[str]:
        """`node` pulls the head's tree with one rsync over one ssh."""
        src = f"{self.layout.address('head')}:{self.layout.model('head')}/"
        return ["rsync", *options, "-e", shlex.join(self.ssh_argv(cipher)), src, f"{self.layout.model(node)}/"]

    def today(self, section: str, receivers: tuple[str, ...], note: str = "") -> Figure:
        """Today's deploy (roles/distribute): every receiver pulls the tree from the head
        with one `rsync -a --delete --partial` over one ssh, default cipher, all at once."""
        jobs = {r: self.rsync_argv(r, None, ("-a", "--delete", "--partial")) for r in receivers}
        return self.run_copies(section, "today: rsync -a, ssh default cipher, star", jobs, note)

    def new(self, section: str, receivers: tuple[str, ...], note: str = "", fanout: str = "chain",
            streams: int | None = None) -> Figure:
        """The new copy as the deploy runs it (spark_cluster.copy_plan): each receiver runs
        tree_copy.py, pulling from its upstream (chain: the node before it, all at once) on
        every rail, each address checked against the upstream's one host key (HostKeyAlias)."""
        streams = streams or self.args.streams or self.deploy_streams()
        jobs = {}
        for node, upstream in upstreams(receivers, "head", fanout).items():
            # The script keeps one SSH connection per stream itself, so --ssh carries no ControlPath.
            # A list per copy, as the deploy writes one (the script removes it once the copy is whole).
            list_file = self.layout.root / f"list-{node}.json"
            list_file.write_text(json.dumps(self.listed))
            argv = copy_argv(str(self.args.copy_script), str(self.layout.model(upstream)), str(self.layout.model(node)),
                             peer_addresses("root", upstream, self.layout.addresses(upstream)), str(list_file),
                             streams, self.ssh_argv(COPY_CIPHER))
            jobs[node] = [sys.executable if a == "python3" and i == 0 else a for i, a in enumerate(argv)]
        plural = "s" if streams != 1 else ""
        return self.run_copies(section, f"new: tree_copy.py, aes128-gcm, {fanout}, {streams} stream{plural}", jobs, note)

    def deploy_streams(self) -> int:
        return STREAMS_PER_RAIL * self.layout.rails

    def iperf(self, section: str, seconds: int) -> Figure:
        """Raw TCP, head -> r1, one stream (iperf3's default)."""
        lay = self.layout
        server = self.spawn(lay.ns("r1"), ["iperf3", "-s", "-1", "-B", lay.address("r1")], out=subprocess.DEVNULL)
        time.sleep(0.5)
        cpu0, wall0 = self.cpu_now(), time.monotonic()
        report = json.loads(sh("iperf3", "-J", "-c", lay.address("r1"), "-t", str(seconds), ns=lay.ns("head")))
        wall, cpu1 = time.monotonic() - wall0, self.cpu_now()
        server.wait(timeout=10)
        received = report["end"]["sum_received"]
        figure = Figure(section, "iperf3", 1, received["seconds"], received["bytes"], cpu1[0] - cpu0[0],
                        None if cpu1[1] is None else cpu1[1] - cpu0[1], "n/a (no files)", "raw TCP, one stream",
                        {"wall": wall})
        self.record(figure)
        return figure

    def shape(self, mbit: int | None) -> None:
        """Every node's egress at `mbit` (each node's own link, as on a switch); None: unshaped."""
        for node in NODES:
            for rail in range(self.layout.rails):
                dev, ns = f"eth{rail}", self.layout.ns(node)
                if mbit:
                    sh("tc", "-n", ns, "qdisc", "replace", "dev", dev, "root", "tbf", "rate", f"{mbit}mbit",
                       "burst", "512kb", "latency", "100ms")
                else:
                    sh("tc", "-n", ns, "qdisc", "del", "dev", dev, "root", check=False)

    # -- the sections

    def run(self) -> None:
        sections, a = self.args.sections, self.args
        script_there = a.copy_script.exists()
        if "new" in sections or "shaped" in sections:
            if not script_there:
                self.note(f"bench: {a.copy_script} is missing: the new method's rows are left out")
        self.background = self.background_load()
        self.note(f"background load before the bench: {self.background:.2f} cores of {os.cpu_count()}")
        if "raw" in sections:
            self.iperf("raw", a.iperf_s)
        if "today" in sections:
            self.today("today", RECEIVERS[:1])
            self.today("today", RECEIVERS)
        if "cipher" in sections:
            for cipher, label in ((None, "default"), (COPY_CIPHER, COPY_CIPHER), (CHACHA, CHACHA)):
                jobs = {"r1": self.rsync_argv("r1", cipher, ("-a", "-W"))}
                self.run_copies("cipher", f"rsync -a -W, one stream, cipher {label}", jobs)
        if "new" in sections and script_there:
            self.new("new", RECEIVERS[:1])
            self.new("new", RECEIVERS)
        if "shaped" in sections:
            note = f"{a.shape_mbit} Mbit/s"
            self.shape(a.shape_mbit)
            try:
                self.iperf("shaped", a.iperf_s)
                self.today("shaped", RECEIVERS[:1], note)
                self.today("shaped", RECEIVERS, note)
                for streams in (a.shaped_streams if script_there else []):
                    self.new("shaped", RECEIVERS[:1], note, streams=streams)
                    self.new("shaped", RECEIVERS, note, streams=streams)
            finally:
                self.shape(None)
        self.clear()

    def report(self) -> str:
        a = self.args
        shards = sum(1 for e in self.entries if e.get("size", 0) >= a.shard_mib * MIB)
        files = sum(1 for e in self.entries if "size" in e)
        commit = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%h"], capture_output=True,
                                text=True).stdout.strip()
        head = (f"Tree: {self.tree_bytes / GIB:.2f} GiB, {files} files ({shards} shards of {a.shard_mib} MiB), "
                f"{len(self.entries) - files} links; {self.layout.rails} rail(s), MTU {a.mtu}; "
                f"{os.cpu_count()} cores, background load {self.background:.2f} cores before the run; "
                f"commit {commit}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.")
        parts = [head, "", figures_table(self.figures)]
        scaling = scaling_table(self.figures, a.shape_mbit)
        if scaling:
            parts += ["", scaling]
        return "\n".join(parts) + "\n"

    # -- tearing down

    def teardown(self) -> None:
        lay = self.layout
        for pid in reversed(self.started):
            stop(pid)
        for name in map(lay.ns, NODES):  # whatever else runs there is the bench's (e.g. a persisting ssh master)
            for pid in sh("ip", "netns", "pids", name, check=False).split():
                stop(int(pid))
        for name in (*map(lay.ns, NODES), lay.switch):
            sh("ip", "netns", "del", name, check=False)
        for path in reversed(self.mounts):
            sh("umount", str(path), check=False)
        self.mounts = []
        shutil.rmtree(lay.root, ignore_errors=True)
        self.leave_cgroup()


def stop(pid: int) -> None:
    """End a process this bench started (its group too: copies lead their own), and reap it."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
        for _ in range(20):
            try:
                if os.waitpid(pid, os.WNOHANG) != (0, 0):
                    return
            except ChildProcessError:  # not our child (a leftover run's): gone when /proc says so
                if not Path(f"/proc/{pid}").exists():
                    return
            time.sleep(0.05)


def cleanup_leftovers() -> None:
    """Remove what killed runs left: processes in scbench-* namespaces (all the bench's),
    the namespaces (and with them veths and bridges), tmpfs mounts, directories, cgroups."""
    names = [line.split()[0] for line in sh("ip", "netns", "list").splitlines() if line.startswith(PREFIX)]
    for name in names:
        for pid in sh("ip", "netns", "pids", name, check=False).split():
            print(f"cleanup: ending pid {pid} in {name}")
            stop(int(pid))
    for name in names:
        print(f"cleanup: deleting namespace {name}")
        sh("ip", "netns", "del", name, check=False)
    for line in reversed(Path("/proc/mounts").read_text().splitlines()):
        source, target = line.split()[:2]
        if source.startswith(PREFIX) and target.startswith(f"/tmp/{PREFIX}"):
            print(f"cleanup: unmounting {target}")
            sh("umount", target, check=False)
    for path in Path("/tmp").glob(f"{PREFIX}*"):
        if path.is_dir() and re.fullmatch(rf"{PREFIX}\d+", path.name):
            print(f"cleanup: removing {path}")
            shutil.rmtree(path, ignore_errors=True)
    for group in CGROUP_ROOT.glob(f"{PREFIX}*"):
        procs = (group / "cgroup.procs").read_text().split()
        for pid in procs:
            (CGROUP_ROOT / "cgroup.procs").write_text(pid)
        group.rmdir()
        print(f"cleanup: removed cgroup {group}")


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=3.0, help="size of the synthetic model (default 3)")
    parser.add_argument("--shard-mib", type=int, default=256)
    parser.add_argument("--rails", type=int, choices=(1, 2), default=1,
                        help="2: two veths per node on two subnets (the copy's multi-address mode)")
    parser.add_argument("--streams", type=int, help="the copy script's --streams (default: its own)")
    parser.add_argument("--shape-mbit", type=int, default=400,
                        help="egress rate of every node in the shaped section (low enough that the link, "
                             "not this machine's CPU, is the limit)")
    parser.add_argument("--shaped-streams", default="default,1",
                        help="the chain's streams in the shaped section, one pair of runs each "
                             "(default: the deploy's; 1 shows the chain's lag per hop at its smallest)")
    parser.add_argument("--mtu", type=int, default=9000)
    parser.add_argument("--iperf-s", type=int, default=4)
    parser.add_argument("--timeout-s", type=int, default=900, help="limit for one measured copy")
    parser.add_argument("--sections", default="raw,today,cipher,new,shaped")
    parser.add_argument("--copy-script", type=Path, default=REPO / "spark_cluster" / "files" / "tree_copy.py")
    parser.add_argument("--markdown", type=Path, help="also write the tables to this file")
    parser.add_argument("--cleanup", action="store_true", help="only remove leftovers of killed runs")
    args = parser.parse_args()
    args.sections = set(args.sections.split(","))
    args.shaped_streams = [None if v == "default" else int(v) for v in args.shaped_streams.split(",")]
    if os.geteuid() != 0:
        sys.exit("bench: needs root (network namespaces, tmpfs, tc): run it with sudo")
    if args.cleanup:
        cleanup_leftovers()
        return
    missing = missing_tools()
    if missing:
        packages = sorted({TOOLS[t] for t in missing})
        sys.exit(f"bench: missing {', '.join(missing)}; install: apt-get install -y {' '.join(packages)}")
    need = sum(e.get("size", 0) for e in tree_plan(args.gib, args.shard_mib)) * len(NODES) + 2 * GIB
    available = memory_available(Path("/proc/meminfo").read_text())
    if available < need:
        sys.exit(f"bench: the four nodes' tmpfs need {need / GIB:.1f} GiB of memory with 2 GiB to spare, "
                 f"{available / GIB:.1f} GiB is available: pass a smaller --gib")
    bench = Bench(Layout(os.getpid(), args.rails), args)
    atexit.register(bench.teardown)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("bench: terminated"))
    try:
        bench.setup()
        bench.run()
    finally:
        bench.teardown()
        atexit.unregister(bench.teardown)
    text = bench.report()
    print("\n" + text + f"\n(log: {bench.log})")
    if args.markdown:
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
