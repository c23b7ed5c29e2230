"""Across nodes: every command runs ON a node, to a peer's QSFP address or name.
This machine only ever talks to the nodes' SSH endpoints.

Each check is reported under the node being reached (the target), probed from
every other member, so a broken worker shows as that worker's failure."""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
import subprocess
import sys
import time
from typing import NamedTuple

from sparkverify.expect import CLUSTER_KEY, REDEPLOY, ROCE_ENV, SERVING_UNIT, Problems, api_key
from sparkverify.parse import parse_env_file, parse_ping, parse_write_bw, ping_counts, roce_v2_index
from sparkverify.rails import (
    gid_table,
    hca_ports,
    link_rate,
    min_link_fraction,
    network_setting,
    node_fabric,
    rail_ip,
)
from sparkverify.result import Result

# Packets per jumbo ping: every one must come back (a link that drops one in
# three still lets ping exit 0).
PING_COUNT = 3
RDMA_BASE_PORT = 18600
# TCP ports (ib_write_bw's out-of-band exchange, -p) each worker's runs may
# use: one per run (rail, direction, and the all-rails run), so pairs running
# together never meet and a server left over from a failed run never answers
# a later run's client.
RDMA_PORTS_PER_WORKER = 32
# Seconds each ib_write_bw runs (-D): long enough for a steady average on a
# CX-7, short enough for soft-RoCE under emulation.
RDMA_DURATION_S = 3
# A run whose two ends both exit 0 but whose client printed no result line
# (soft-RoCE under emulation does this now and then) is measured once more, on
# ports this far above its own: the first run's server may still listen there.
# A run that fails (an error, a refused connect) is not repeated.
RDMA_RETRY_PORT_OFFSET = RDMA_PORTS_PER_WORKER // 2
# How long the servers get to listen before their clients connect.
SERVER_SETTLE_S = 1.5
# One short completion: enough to prove the engine generates, cheap on a real model.
CHAT_MAX_TOKENS = 8
CHAT_TIMEOUT_S = 60
# Printed as one JSON line by a worker probing the head's API.
# argv: base URL, model to ask ("" = the first one /v1/models lists), chat timeout (s),
# max tokens; the API key, if any, is the first line on stdin (never in an argv).
ENDPOINT_PROBE = r"""
import json, sys, time, urllib.error, urllib.request
base, model, chat_timeout, max_tokens, out = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), {}
key = sys.stdin.readline().strip()
auth = {"Authorization": "Bearer " + key} if key else {}
try:
    with urllib.request.urlopen(base + "/health", timeout=10) as r:
        out["health"] = r.status
except urllib.error.HTTPError as e:
    out["health"] = e.code
except Exception as e:
    out["health_error"] = repr(e)
try:
    with urllib.request.urlopen(urllib.request.Request(base + "/v1/models", headers=auth), timeout=10) as r:
        body = json.load(r)
    data = body.get("data") if isinstance(body, dict) else None
    out["models"] = [m.get("id") for m in data] if isinstance(data, list) else None
except Exception as e:
    out["models_error"] = repr(e)
model = model or (out.get("models") or [None])[0]
if not model:
    out["chat_error"] = "no model to ask: the inventory names none and /v1/models lists none"
else:
    request = urllib.request.Request(
        base + "/v1/chat/completions", method="POST", headers={"Content-Type": "application/json", **auth},
        data=json.dumps({"model": model, "max_tokens": max_tokens, "temperature": 0,
                         "messages": [{"role": "user", "content": "Say hello in one word."}]}).encode())
    chat, started = {"model": model}, time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=chat_timeout) as r:
            chat["status"], answer = r.status, json.load(r)
        elapsed = time.monotonic() - started
        chat["elapsed_s"] = round(elapsed, 3)
        choices = answer.get("choices") if isinstance(answer, dict) else None
        first = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
        message = first.get("message") if isinstance(first.get("message"), dict) else {}
        chat["content"] = message.get("content")
        # An engine with a reasoning parser puts a reply cut short while still
        # thinking into reasoning_content, leaving content empty: that is
        # generated text all the same.
        chat["reasoning"] = message.get("reasoning_content") or message.get("reasoning")
        usage = answer.get("usage") if isinstance(answer, dict) else None
        chat["completion_tokens"] = usage.get("completion_tokens") if isinstance(usage, dict) else None
        tokens = chat["completion_tokens"]
        # From the time as measured: an answer within half a millisecond (an engine
        # on this machine) rounds to 0.000 s and would show no speed at all.
        if isinstance(tokens, int) and tokens > 0 and elapsed > 0:
            chat["tokens_per_s"] = round(tokens / elapsed, 2)
    except urllib.error.HTTPError as e:
        chat["status"], chat["body"] = e.code, e.read(300).decode(errors="replace")
    except Exception as e:
        chat["error"] = repr(e)
    out["chat"] = chat
print(json.dumps(out))
"""


def ping_fix(verdict: str, mtu: int, netdev: str) -> str:
    return {
        "too_big": f"a device on the path has MTU below {mtu} ({netdev} or a switch port): see check 'links' on both nodes",
        "no_reply": f"no route or no link over {netdev}: see check 'links' on both nodes, and the cable",
        "lossy": f"a flapping link or errors on the path: compare the error and drop counters of "
                 f"`ip -s link show {netdev}` on both nodes, and reseat or swap the cable",
    }.get(verdict, f"check that `ping` and {netdev} exist on the source node")


def ping_found(verdict: str, output: str, brief: str) -> str:
    """How many came back, and the first error ping printed (the statistics
    line is the last line, so `brief` alone would hide it)."""
    counts = ping_counts(output)
    if counts is None:
        return f"{verdict}: {brief}"
    errors = [line.strip() for line in output.splitlines()
              if re.search(r"error|frag needed|unreachable|too long", line, re.I) and "transmitted" not in line]
    return f"{verdict}: {counts[1]} of {counts[0]} answered" + (f" ({errors[0]})" if errors else "")


def peer_addresses(spec, target: str) -> list[tuple[str, str | None]]:
    """(netdev, the target's address on it) for each link of the node `spec`:
    the fabric lists the peers' addresses per link in the inventory's peer order."""
    names = [peer["name"] for peer in spec.get("peers", [])]
    return [(link.netdev, dict(zip(names, link.peer_ips)).get(target)) for link in node_fabric(spec).links]


def test_ping_mtu(node, cluster):
    """Full-MTU frames get through unfragmented from every peer, over each of
    its links, to this node's address on that link."""
    problems = Problems(node.name)
    for source in cluster.others(node.name):
        mtu = int(network_setting(source.spec, "mtu"))
        for netdev, address in peer_addresses(source.spec, node.name):
            what = f"ping from {source.name} over {netdev} to {address} ({mtu}-byte frames, do-not-fragment)"
            if address is None:
                problems.add(what, f"an address of {node.name} on {netdev}", "none in the inventory",
                             f"{node.name} is not among {source.name}'s peers: check the inventory")
                continue
            ping = source.run(
                f"timeout 20 ping -M do -s {mtu - 28} -c {PING_COUNT} -W 2 -I {shlex.quote(netdev)} {address}",
                timeout=30,
            )
            output = ping.stdout + ping.stderr
            verdict = parse_ping(output)
            if not ping.ok or verdict != "ok":
                problems.add(what, f"{PING_COUNT} of {PING_COUNT} answered", ping_found(verdict, output, ping.brief),
                             ping_fix(verdict, mtu, netdev))
    problems.check()


def ssh_diagnosis(stderr: str) -> str:
    if "Host key verification failed" in stderr or "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr:
        return "the target's host key is missing or stale in /etc/ssh/ssh_known_hosts: see check 'known_hosts'"
    if "Permission denied" in stderr:
        return "the cluster key is not in the target's ~/.ssh/authorized_keys"
    if "Could not resolve hostname" in stderr:
        return "the peer name is not in the managed ~/.ssh/config block"
    if "timed out" in stderr or "No route" in stderr or "no answer within" in stderr:
        return "the QSFP link is down: see checks 'links' and 'ping_mtu'"
    return "read the error above"


def test_ssh_mesh(node, cluster):
    """Every peer logs in to this node with the cluster key, host key checked."""
    problems = Problems(node.name)
    target = node.spec
    options = "-o BatchMode=yes -o StrictHostKeyChecking=yes -o ConnectTimeout=5"
    for source in cluster.others(node.name):
        key = f"{source.admin_home()}/{CLUSTER_KEY}"
        attempts = {
            # By name: the managed ~/.ssh/config must supply key and QSFP address.
            target.name: f"ssh {options} {target.name} true",
            # By address: the cluster key, and a known_hosts entry for the IP.
            target.qsfp_ip: f"ssh {options} -o IdentitiesOnly=yes -i {shlex.quote(key)} {target.qsfp_ip} true",
        }
        for destination, command in attempts.items():
            login = source.run(f"timeout 25 {command}", timeout=35)
            if not login.ok:
                problems.add(f"ssh {source.name} -> {destination}", "login", login.brief,
                             f"{ssh_diagnosis(login.stderr + login.stdout)}; {REDEPLOY} (roles/ssh)")
        resolved = source.run(f"ssh -G {target.name} | awk '$1 == \"hostname\" {{print $2}}'").stdout.strip()
        address = resolved
        try:
            ipaddress.ip_address(resolved)
        except ValueError:
            address = source.run(f"getent ahostsv4 {shlex.quote(resolved)} | awk 'NR==1 {{print $1}}'").stdout.strip()
        if address != target.qsfp_ip:
            problems.add(f"ssh {source.name} -> {target.name} address", f"{target.qsfp_ip} (QSFP)",
                         f"{resolved} ({address or 'unresolved'})",
                         "the ~/.ssh/config block must send peers over the QSFP link; re-deploy roles/ssh")
    problems.check()


class RdmaEnd(NamedTuple):
    """One rail's RDMA device on one node, with the GID index of the rail's address."""

    node: str
    hca: str
    ib_port: int
    gid_index: int
    ip: str  # the address whose RoCE v2 GID it uses; a server listens on it

    def __str__(self) -> str:
        return f"{self.node} {self.hca} port {self.ib_port} gid {self.gid_index}"


class RdmaRun(NamedTuple):
    """One ib_write_bw pair on one rail: a server, a client that connects to
    its address, their own TCP port (-p)."""

    rail: str
    server: RdmaEnd
    client: RdmaEnd
    tcp_port: int

    @property
    def direction(self) -> str:
        return f"{self.client.node} -> {self.server.node}"

    def describe(self) -> str:
        return f"RDMA on rail {self.rail} {self.direction} (client {self.client}, server {self.server})"


def rdma_plan(rails: list[str], head: list[RdmaEnd], worker: list[RdmaEnd],
              first_port: int) -> tuple[list[list[RdmaRun]], list[RdmaRun]]:
    """(each rail alone, one direction at a time; every rail at once, head to
    worker): rail i of the head talks to rail i of the worker, every pair on a
    TCP port of its own from first_port up, so pairs that run together (and a
    server left over from a failed run) never meet."""
    alone, ports = [], iter(range(first_port, first_port + RDMA_RETRY_PORT_OFFSET))
    for rail, head_end, worker_end in zip(rails, head, worker):
        alone.append([RdmaRun(rail, worker_end, head_end, next(ports))])
        alone.append([RdmaRun(rail, head_end, worker_end, next(ports))])
    together = [RdmaRun(rail, worker_end, head_end, next(ports)) for rail, head_end, worker_end in zip(rails, head, worker)]
    return alone, together


def write_bw_command(end: RdmaEnd, tcp_port: int) -> str:
    """ib_write_bw's own options, the same on both sides (perftest compares them)."""
    return (f"ib_write_bw -d {shlex.quote(end.hca)} -i {end.ib_port} -x {end.gid_index} -p {tcp_port} "
            f"-D {RDMA_DURATION_S} -F --report_gbits")


def client_command(run: RdmaRun) -> str:
    # The server may need a moment to listen: retry the connect, never a run that connected.
    return (f"for i in 1 2 3 4 5; do out=$(timeout {RDMA_DURATION_S + 30} {write_bw_command(run.client, run.tcp_port)} "
            f"{run.server.ip} 2>&1); rc=$?; case \"$out\" in *\"Couldn't connect\"*) sleep 1;; *) break;; esac; done; "
            "printf '%s\\n' \"$out\"; exit $rc")


def server_command(run: RdmaRun) -> str:
    return f"timeout {RDMA_DURATION_S + 60} {write_bw_command(run.server, run.tcp_port)}"


class RdmaOutcome(NamedTuple):
    run: RdmaRun
    client: Result
    server: Result

    @property
    def gbits(self) -> float | None:
        return parse_write_bw(self.client.stdout) if self.client.ok and self.server.ok else None


def run_pairs(runs: list[RdmaRun], nodes: dict) -> list[RdmaOutcome]:
    """Every run's server, then every run's client, all at once (one run: that rail alone)."""
    servers = [nodes[run.server.node].start(server_command(run)) for run in runs]
    time.sleep(SERVER_SETTLE_S)
    clients = [nodes[run.client.node].start(client_command(run)) for run in runs]
    answers = [client.wait(timeout=RDMA_DURATION_S + 45) for client in clients]
    # A server whose client failed may wait for it until its own timeout: not this long.
    served = [server.wait(timeout=RDMA_DURATION_S + 65 if answer.ok else 10) for server, answer in zip(servers, answers)]
    return [RdmaOutcome(run, answer, serve) for run, answer, serve in zip(runs, answers, served)]


def measured_without_result(outcome: RdmaOutcome) -> bool:
    return outcome.client.ok and outcome.server.ok and outcome.gbits is None


def measure(runs: list[RdmaRun], nodes: dict) -> tuple[list[RdmaOutcome], bool]:
    """(outcomes, whether they are a second run): runs that must run together
    run again together when any of them ended well but printed no result."""
    outcomes = run_pairs(runs, nodes)
    if not any(measured_without_result(outcome) for outcome in outcomes):
        return outcomes, False
    return run_pairs([run._replace(tcp_port=run.tcp_port + RDMA_RETRY_PORT_OFFSET) for run in runs], nodes), True


def rdma_ends(peer, problems: Problems) -> list[RdmaEnd | None]:
    """Each rail's end on `peer`, None where its device holds no RoCE v2 GID of the rail's address."""
    fab = node_fabric(peer.spec)
    roce = peer.read_root_file(ROCE_ENV)
    ports = hca_ports(parse_env_file(roce).get("NCCL_IB_HCA", "")) if roce else {}
    ends = []
    for rail in fab.rails:
        port, ip = ports.get(rail.rdma_device, 1), rail_ip(fab, rail)
        index = roce_v2_index(gid_table(peer, rail.rdma_device, port), ip)
        if index is None:
            problems.add(f"{rail.rdma_device} on {peer.name} (rail {rail.netdev})", f"a RoCE v2 GID of {ip}",
                         "none in its GID table", f"see check 'roce_gid' on {peer.name}")
        ends.append(None if index is None else RdmaEnd(peer.name, rail.rdma_device, port, index, ip))
    return ends


class LinkRates:
    """The link rate sysfs reports per (node, device, port), read once."""

    def __init__(self, nodes: dict):
        self.nodes, self.read = nodes, {}

    def of(self, end: RdmaEnd) -> tuple[float | None, str]:
        key = (end.node, end.hca, end.ib_port)
        if key not in self.read:
            self.read[key] = link_rate(self.nodes[end.node], end.hca, end.ib_port)
        return self.read[key]

    def of_run(self, run: RdmaRun) -> tuple[float | None, str]:
        """(the slower end's rate: no rail carries more than it, ""), or (None,
        what sysfs said instead at the end(s) without one)."""
        read = [(end, *self.of(end)) for end in (run.client, run.server)]
        missing = [f"{end.node} {end.hca} port {end.ib_port}: {said}" for end, rate, said in read if rate is None]
        return (None, "; ".join(missing)) if missing else (min(rate for _, rate, _ in read), "")


def test_rdma(cluster, worker_name, record_property):
    """ib_write_bw between the head and this worker on every rail, each
    direction alone, then on all rails at once; each rail's Gb/s and the total
    go to the report. With rdma_min_link_fraction above 0 (real Sparks) a rail
    below that share of the link rate sysfs reports fails."""
    worker, head = cluster.node(worker_name), cluster.head
    problems = Problems(worker.name)
    nodes = {head.name: head, worker.name: worker}
    for peer in (head, worker):
        if not peer.run("command -v ib_write_bw").ok:
            problems.add(f"ib_write_bw on {peer.name}", "installed", "missing", "install perftest (roles/rdma)")
    problems.check()
    fraction = min_link_fraction(worker.spec)
    head_rails, worker_rails = node_fabric(head.spec).rails, node_fabric(worker.spec).rails
    if len(head_rails) != len(worker_rails):
        problems.add("rails", f"as many on {worker.name} as on {head.name} (rail i talks to rail i)",
                     f"{head.name}: {','.join(r.netdev for r in head_rails)}; "
                     f"{worker.name}: {','.join(r.netdev for r in worker_rails)}",
                     "give every node the same qsfp_ports (group_data), then re-deploy")
    head_ends, worker_ends = rdma_ends(head, problems), rdma_ends(worker, problems)
    usable = [(rail.netdev, h, w) for rail, h, w in zip(head_rails, head_ends, worker_ends) if h and w]
    first_port = RDMA_BASE_PORT + int(worker.spec.get("node_rank", 1)) * RDMA_PORTS_PER_WORKER
    alone, together = rdma_plan([u[0] for u in usable], [u[1] for u in usable], [u[2] for u in usable], first_port)
    rates = LinkRates(nodes)
    failed_fix = ("check 'roce_gid' on both nodes (the rail's GID), 'memlock' (registration needs unlimited memlock) "
                  "and check 'links' for that rail")
    slow_fix = ("a CX-7 hot-plugged after boot stays at ~13 Gb/s until a reboot with the cable in: reboot the node; "
                "else check `ethtool RAIL` (speed) and reseat or swap the cable")
    measured: dict[str, list[str]] = {}
    gbits_by_run: dict[str, float] = {}  # the figures themselves, for the JSON report
    unrated: set[str] = set()  # each unreadable rate named once
    for runs in alone:
        (outcome,), again = measure(runs, nodes)
        run, gbits = outcome.run, outcome.gbits
        second = " (second run)" if again else ""
        if gbits is None:
            problems.add(outcome.run.describe(), f"an ib_write_bw result ({RDMA_DURATION_S} s)",
                         rdma_found(outcome) + second, failed_fix)
            measured.setdefault(run.rail, []).append(f"{run.direction} failed{second}")
            continue
        measured.setdefault(run.rail, []).append(f"{run.direction} {gbits:.1f} Gb/s{second}")
        gbits_by_run[f"{run.rail} {run.direction}"] = round(gbits, 1)
        if fraction > 0:
            rate, said = rates.of_run(run)
            if rate is None:
                if said not in unrated:
                    unrated.add(said)
                    problems.add(f"link rate on rail {run.rail}", "a rate in Gb/s from sysfs (ports/N/rate)", said,
                                 "check `rdma link` and the port's state; set rdma_min_link_fraction = 0 only where "
                                 "no link rate means anything (emulated RoCE)")
            elif gbits < fraction * rate:
                problems.add(f"{run.describe()} bandwidth",
                             f">= {fraction * rate:.1f} Gb/s ({fraction:g} of the {rate:g} Gb/s link rate sysfs reports)",
                             f"{gbits:.1f} Gb/s", slow_fix.replace("RAIL", run.rail))
    detail = [f"rail {rail}: {', '.join(figures)}" for rail, figures in measured.items()]
    if together:
        outcomes, again = measure(together, nodes)
        second = " (second run)" if again else ""
        figures = [outcome.gbits for outcome in outcomes]
        for outcome, gbits in zip(outcomes, figures):
            if gbits is None:
                problems.add(f"{outcome.run.describe()}, all rails at once", f"an ib_write_bw result ({RDMA_DURATION_S} s)",
                             rdma_found(outcome) + second, failed_fix)
        total = sum(gbits for gbits in figures if gbits is not None)
        gbits_by_run[f"all rails {together[0].direction}"] = round(total, 1)
        detail.append(f"all rails at once {together[0].direction}: "
                      + " + ".join(f"{gbits:.1f}" if gbits is not None else "failed" for gbits in figures)
                      + f" = {total:.1f} Gb/s{second}")
        known = [rate for rate, _ in (rates.of_run(run) for run in together) if rate is not None] if fraction > 0 else []
        # The rails of one port share its cable: together they must carry at least
        # what one rail's link rate asks, however sysfs splits the port's rate.
        if known and None not in figures and total < fraction * max(known):
            problems.add(f"RDMA {together[0].direction} on all rails at once",
                         f">= {fraction * max(known):.1f} Gb/s in total ({fraction:g} of the {max(known):g} Gb/s link rate)",
                         f"{total:.1f} Gb/s", slow_fix.replace("RAIL", "each rail"))
    # Shown next to the check in the suite's summary and JSON report (conftest.py);
    # the numbers also under the row's "figures" there.
    record_property("detail", "; ".join(detail))
    record_property("gbits", gbits_by_run)
    problems.check()


# perftest prints its banner, then the error: these words mark the lines that say what went wrong.
_PERFTEST_ERROR = re.compile(r"couldn't|unable|fail|error|refused|timed out|no such|not found|no answer", re.I)


def rdma_found(outcome: RdmaOutcome) -> str:
    def side(result: Result) -> str:
        if result.ok:
            return "ok"
        errors = [line.strip() for line in (result.stdout + "\n" + result.stderr).splitlines()
                  if _PERFTEST_ERROR.search(line)]
        return " / ".join(errors[:2]) if errors else result.brief
    if outcome.client.ok and outcome.server.ok:
        return "no result line in the client's output"
    return f"client: {side(outcome.client)}; server: {side(outcome.server)}"


CHAT = "/v1/chat/completions"


def completion_problems(probe: dict) -> list[tuple[str, str, str]]:
    """(what, expected, found) for a chat completion that did not generate."""
    chat = probe.get("chat")
    if not isinstance(chat, dict):
        return [(CHAT, "an answer to one chat completion", probe.get("chat_error", "no completion asked"))]
    what = f"{CHAT} (model {chat.get('model')}, max_tokens {CHAT_MAX_TOKENS})"
    if "error" in chat:
        return [(what, f"an answer within {CHAT_TIMEOUT_S} s", chat["error"])]
    if chat.get("status") != 200:
        return [(what, "HTTP 200", f"HTTP {chat.get('status')}: {chat.get('body', '')}")]
    found = []
    text = next((t for t in (chat.get("content"), chat.get("reasoning")) if isinstance(t, str) and t.strip()), None)
    if text is None:
        found.append((what, "generated text in choices[0].message.content", repr(chat.get("content"))))
    tokens = chat.get("completion_tokens")
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens <= 0:
        found.append((what, "usage.completion_tokens > 0",
                      "no usage.completion_tokens" if tokens is None else tokens))
    return found


def endpoint_problems(probe: dict, served_name: str | None) -> list[tuple[str, str, str]]:
    """(what, expected, found) for each way the probe's answer falls short:
    the API must be up, list the served model, and generate with it."""
    found = []
    if probe.get("health") != 200:
        found.append(("/health", "200", probe.get("health", probe.get("health_error", "no answer"))))
    models = probe.get("models")
    if not models:
        found.append(("/v1/models", "JSON with a non-empty data list",
                      probe.get("models_error", models if models is not None else "no data list")))
    elif served_name and served_name not in models:
        found.append(("/v1/models", f"model id {served_name}", models))
    return found + completion_problems(probe)


def completion_speed(worker: str, probe: dict) -> str | None:
    """The completion's tokens per second as the report shows it, None without one."""
    chat = probe.get("chat") if isinstance(probe.get("chat"), dict) else {}
    if "tokens_per_s" not in chat:
        return None
    return (f"completion from {worker}: {chat['completion_tokens']} tokens in {chat['elapsed_s']:.2f} s "
            f"= {chat['tokens_per_s']:.1f} tokens/s")


def test_openai_endpoint(cluster, head_name, record_property):
    """The head's API answers over the QSFP side and generates, asked from every worker."""
    head = cluster.node(head_name)
    problems = Problems(head.name)
    port = head.spec.settings.api_port
    url = f"http://{head.spec.qsfp_ip}:{port}"
    served = head.spec.settings.serving_served_model_name
    startup = (f"startup takes 3-19 minutes; otherwise see `journalctl -u {SERVING_UNIT}` on "
               f"{head.name} and check 'serving_unit' on every node (the head waits for all workers)")
    generation = (f"the engine answers but does not generate: read `docker logs spark-serving` on {head.name} "
                  "(out of memory, a worker that left, NCCL errors: see checks 'rdma' and 'serving_unit')")
    speeds = []
    key = api_key(head.spec.settings.serving_api_key_file)
    for worker in cluster.workers:
        probe_command = f"python3 -c {shlex.quote(ENDPOINT_PROBE)} {url} {shlex.quote(served or '')} {CHAT_TIMEOUT_S} {CHAT_MAX_TOKENS}"
        answer = worker.run(probe_command, timeout=CHAT_TIMEOUT_S + 40, stdin=(key or "") + "\n")
        try:
            probe = json.loads(answer.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            problems.add(f"probe from {worker.name}", "a JSON line", answer.brief, "python3 is needed on the nodes")
            continue
        for what, expected, found in endpoint_problems(probe, served):
            problems.add(f"{url}{what} from {worker.name}", expected, found,
                         generation if what.startswith(CHAT) else startup)
        speed = completion_speed(worker.name, probe)
        if speed:
            speeds.append(speed)
    if head.spec.settings.api_listen == "all":
        # Open beyond the cable: it must answer here too, on the address this controller knows the head by.
        here = f"http://{head.spec.get('ssh_hostname')}:{port}"
        done = subprocess.run([sys.executable, "-c", ENDPOINT_PROBE, here, served or "", str(CHAT_TIMEOUT_S),
                               str(CHAT_MAX_TOKENS)], input=(key or "") + "\n", capture_output=True, text=True,
                              timeout=CHAT_TIMEOUT_S + 40)
        try:
            probe = json.loads(done.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            probe = {"health_error": (done.stderr or done.stdout).strip()[-300:]}
        for what, expected, found in endpoint_problems(probe, served):
            problems.add(f"{here}{what} from this controller", expected, found,
                         "api_listen = 'all': a firewall between here and the head, or the head's management "
                         "address differs from ssh_hostname" if not what.startswith(CHAT) else generation)
        speed = completion_speed("this controller", probe)
        if speed:
            speeds.append(speed)
    if speeds:
        # Shown next to the check in the suite's summary and JSON report (conftest.py).
        record_property("detail", "; ".join(speeds))
    problems.check()
