"""Across nodes: every command runs ON a node, to a peer's QSFP address or name.
This machine only ever talks to the nodes' SSH endpoints.

Each check is reported under the node being reached (the target), probed from
every other member, so a broken worker shows as that worker's failure."""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
import time
from typing import NamedTuple

from sparkverify.expect import CLUSTER_KEY, REDEPLOY, ROCE_ENV, SERVING_UNIT, Problems
from sparkverify.parse import parse_env_file, parse_hca_list, parse_ping, ping_counts

# Packets per jumbo ping: every one must come back (a link that drops one in
# three still lets ping exit 0).
PING_COUNT = 3
RDMA_BASE_PORT = 18600
# TCP ports (ibv_rc_pingpong's out-of-band exchange) each worker's runs may use:
# one per (HCA pair, direction), so a server left over from a failed run never
# answers a later run's client.
RDMA_PORTS_PER_WORKER = 32
RDMA_ITERATIONS = 5
# One short completion: enough to prove the engine generates, cheap on a real model.
CHAT_MAX_TOKENS = 8
CHAT_TIMEOUT_S = 60
# Printed as one JSON line by a worker probing the head's API.
# argv: base URL, model to ask ("" = the first one /v1/models lists), chat timeout (s).
ENDPOINT_PROBE = r"""
import json, sys, time, urllib.error, urllib.request
base, model, chat_timeout, max_tokens, out = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), {}
try:
    with urllib.request.urlopen(base + "/health", timeout=10) as r:
        out["health"] = r.status
except urllib.error.HTTPError as e:
    out["health"] = e.code
except Exception as e:
    out["health_error"] = repr(e)
try:
    with urllib.request.urlopen(base + "/v1/models", timeout=10) as r:
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
        base + "/v1/chat/completions", method="POST", headers={"Content-Type": "application/json"},
        data=json.dumps({"model": model, "max_tokens": max_tokens, "temperature": 0,
                         "messages": [{"role": "user", "content": "Say hello in one word."}]}).encode())
    chat, started = {"model": model}, time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=chat_timeout) as r:
            chat["status"], answer = r.status, json.load(r)
        chat["elapsed_s"] = round(time.monotonic() - started, 3)
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
        if isinstance(tokens, int) and tokens > 0 and chat["elapsed_s"] > 0:
            chat["tokens_per_s"] = round(tokens / chat["elapsed_s"], 2)
    except urllib.error.HTTPError as e:
        chat["status"], chat["body"] = e.code, e.read(300).decode(errors="replace")
    except Exception as e:
        chat["error"] = repr(e)
    out["chat"] = chat
print(json.dumps(out))
"""


def ping_fix(verdict: str, mtu: int) -> str:
    return {
        "too_big": f"a device on the path has MTU below {mtu} (bond, slaves, switch port): see check 'bond'",
        "no_reply": "no route or no link over the QSFP side: check 'bond' on both nodes and the cable",
        "lossy": "a flapping link or errors on the path: compare the error and drop counters of "
                 "`ip -s link` for the bond and its slaves on both nodes, and reseat or swap the cable",
    }.get(verdict, "check that `ping` and the bond exist on the source node")


def ping_found(verdict: str, output: str, brief: str) -> str:
    """How many came back, and the first error ping printed (the statistics
    line is the last line, so `brief` alone would hide it)."""
    counts = ping_counts(output)
    if counts is None:
        return f"{verdict}: {brief}"
    errors = [line.strip() for line in output.splitlines()
              if re.search(r"error|frag needed|unreachable|too long", line, re.I) and "transmitted" not in line]
    return f"{verdict}: {counts[1]} of {counts[0]} answered" + (f" ({errors[0]})" if errors else "")


def test_ping_mtu(node, cluster):
    """Jumbo frames get through unfragmented from every peer."""
    problems = Problems(node.name)
    mtu = int(node.spec.get("mtu", 9000))
    bond = node.spec.get("bond_name", "bond0")
    for source in cluster.others(node.name):
        ping = source.run(
            f"timeout 20 ping -M do -s {mtu - 28} -c {PING_COUNT} -W 2 -I {shlex.quote(bond)} {node.spec.qsfp_ip}",
            timeout=30,
        )
        output = ping.stdout + ping.stderr
        verdict = parse_ping(output)
        if not ping.ok or verdict != "ok":
            problems.add(f"ping from {source.name} ({mtu}-byte frames, do-not-fragment)",
                         f"{PING_COUNT} of {PING_COUNT} answered", ping_found(verdict, output, ping.brief),
                         ping_fix(verdict, mtu))
    problems.check()


def ssh_diagnosis(stderr: str) -> str:
    if "Host key verification failed" in stderr or "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr:
        return "the target's host key is missing or stale in /etc/ssh/ssh_known_hosts: see check 'known_hosts'"
    if "Permission denied" in stderr:
        return "the cluster key is not in the target's ~/.ssh/authorized_keys"
    if "Could not resolve hostname" in stderr:
        return "the peer name is not in the managed ~/.ssh/config block"
    if "timed out" in stderr or "No route" in stderr or "no answer within" in stderr:
        return "the QSFP link is down: see checks 'bond' and 'ping_mtu'"
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


class RoceSettings(NamedTuple):
    """What roles/rdma wrote to a node's roce.env: the HCAs NCCL uses, one GID index for all."""

    hcas: tuple[tuple[str, int], ...]  # (device, port)
    gid_index: str


class RdmaEnd(NamedTuple):
    node: str
    hca: str
    ib_port: int
    gid_index: str

    def __str__(self) -> str:
        return f"{self.node} {self.hca} port {self.ib_port} gid {self.gid_index}"


class RdmaRun(NamedTuple):
    """One ibv_rc_pingpong: a server, a client that connects to it, their own TCP port."""

    server: RdmaEnd
    client: RdmaEnd
    tcp_port: int

    @property
    def direction(self) -> str:
        return f"{self.client.node} -> {self.server.node}"

    def describe(self) -> str:
        return f"RDMA {self.direction} (client {self.client}, server {self.server})"


def rdma_plan(head: str, head_roce: RoceSettings, worker: str, worker_roce: RoceSettings,
              first_port: int) -> tuple[list[RdmaRun], list[tuple[str, str, str]]]:
    """Every HCA pair (the i-th of the head with the i-th of the worker), each in
    both directions, on ports from first_port up; and (what, expected, found)
    when the two nodes list a different number of HCAs (NCCL would pair a rail
    with nothing)."""
    problems = []
    if len(head_roce.hcas) != len(worker_roce.hcas):
        problems.append((
            f"HCAs in {ROCE_ENV}", f"as many on {worker} as on {head} (HCA i talks to HCA i)",
            f"{head}: {','.join(h for h, _ in head_roce.hcas)}; {worker}: {','.join(h for h, _ in worker_roce.hcas)}",
        ))
    runs = []
    for (head_hca, head_port), (worker_hca, worker_port) in zip(head_roce.hcas, worker_roce.hcas):
        head_end = RdmaEnd(head, head_hca, head_port, head_roce.gid_index)
        worker_end = RdmaEnd(worker, worker_hca, worker_port, worker_roce.gid_index)
        runs.append(RdmaRun(server=worker_end, client=head_end, tcp_port=first_port + len(runs)))
        runs.append(RdmaRun(server=head_end, client=worker_end, tcp_port=first_port + len(runs)))
    if len(runs) > RDMA_PORTS_PER_WORKER:
        raise ValueError(f"{len(runs)} RDMA runs need more than the {RDMA_PORTS_PER_WORKER} ports of one worker")
    return runs, problems


def rdma_settings(peer) -> RoceSettings | None:
    text = peer.read_root_file(ROCE_ENV)
    if text is None:
        return None
    env = parse_env_file(text)
    hcas = parse_hca_list(env.get("NCCL_IB_HCA", ""))
    gid = env.get("NCCL_IB_GID_INDEX", "")
    return RoceSettings(tuple(hcas), gid) if hcas and gid.isdigit() else None


def pingpong_command(end: RdmaEnd, tcp_port: int) -> str:
    return (f"ibv_rc_pingpong -d {shlex.quote(end.hca)} -i {end.ib_port} -g {end.gid_index} "
            f"-n {RDMA_ITERATIONS} -p {tcp_port}")


def rdma_pingpong(run: RdmaRun, server, client, server_ip: str):
    """(client result, server result) of one run; `server`/`client` are the nodes."""
    started = server.start(f"timeout 30 {pingpong_command(run.server, run.tcp_port)}")
    try:
        time.sleep(1.5)
        # The server may need a moment to listen: retry the connect, not the exchange.
        answer = client.run(
            f"for i in 1 2 3 4 5; do timeout 20 {pingpong_command(run.client, run.tcp_port)} {server_ip} "
            "&& exit 0; rc=$?; [ $rc -eq 124 ] && exit $rc; sleep 1; done; exit 1",
            timeout=60,
        )
    finally:
        served = started.wait(timeout=40)
    return answer, served


def test_rdma(cluster, worker_name):
    """RC ping-pongs between the head and this worker: every HCA pair of roce.env, both directions."""
    worker, head = cluster.node(worker_name), cluster.head
    problems = Problems(worker.name)
    settings = {peer.name: rdma_settings(peer) for peer in (head, worker)}
    for name, found in settings.items():
        if found is None:
            problems.add(f"{ROCE_ENV} on {name}", "NCCL_IB_HCA and NCCL_IB_GID_INDEX", "missing or empty",
                         f"see check 'roce_gid' on {name}")
    for peer in (head, worker):
        if not peer.run("command -v ibv_rc_pingpong").ok:
            problems.add(f"ibv_rc_pingpong on {peer.name}", "installed", "missing",
                         "install ibverbs-utils (roles/rdma)")
    problems.check()
    first_port = RDMA_BASE_PORT + int(worker.spec.get("node_rank", 1)) * RDMA_PORTS_PER_WORKER
    runs, mismatches = rdma_plan(head.name, settings[head.name], worker.name, settings[worker.name], first_port)
    for what, expected, found in mismatches:
        problems.add(what, expected, found,
                     "a RoCE port down or missing on one node (cable, `rdma link`) or a pinned NCCL_IB_HCA "
                     f"that differs between nodes: see check 'roce_gid' on both; {REDEPLOY} (roles/rdma)")
    fix = ("check 'roce_gid' on both nodes (a wrong GID index stalls RoCE v2), "
           "'memlock' (registration needs unlimited memlock) and the link of that HCA")
    nodes = {head.name: head, worker.name: worker}
    for run in runs:
        server_node = nodes[run.server.node]
        client, served = rdma_pingpong(run, server_node, nodes[run.client.node], server_node.spec.qsfp_ip)
        if not (client.ok and served.ok):
            outcome = {side: "ok" if result.ok else result.brief for side, result in
                       (("client", client), ("server", served))}
            problems.add(run.describe(), f"{RDMA_ITERATIONS} round trips",
                         f"client: {outcome['client']}; server: {outcome['server']}", fix)
    problems.check()


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
    port = int(head.spec.get("api_port", 8000))
    url = f"http://{head.spec.qsfp_ip}:{port}"
    served = head.spec.get("serving_served_model_name")
    startup = (f"startup takes 3-19 minutes; otherwise see `journalctl -u {SERVING_UNIT}` on "
               f"{head.name} and check 'serving_unit' on every node (the head waits for all workers)")
    generation = (f"the engine answers but does not generate: read `docker logs spark-serving` on {head.name} "
                  "(out of memory, a worker that left, NCCL errors: see checks 'rdma' and 'serving_unit')")
    speeds = []
    for worker in cluster.workers:
        probe_command = f"python3 -c {shlex.quote(ENDPOINT_PROBE)} {url} {shlex.quote(served or '')} {CHAT_TIMEOUT_S} {CHAT_MAX_TOKENS}"
        answer = worker.run(probe_command, timeout=CHAT_TIMEOUT_S + 40)
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
    if speeds:
        # Shown next to the check in the suite's summary and JSON report (conftest.py).
        record_property("detail", "; ".join(speeds))
    problems.check()
