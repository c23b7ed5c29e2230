"""Across nodes: every command runs ON a node, to a peer's QSFP address or name.
This machine only ever talks to the nodes' SSH endpoints.

Each check is reported under the node being reached (the target), probed from
every other member, so a broken worker shows as that worker's failure."""

from __future__ import annotations

import ipaddress
import json
import shlex
import time

import pytest
from sparkverify.expect import CLUSTER_KEY, REDEPLOY, ROCE_ENV, SERVING_UNIT, Problems
from sparkverify.parse import parse_env_file, parse_hca_list, parse_ping

RDMA_BASE_PORT = 18600
# Printed as one JSON line by a worker probing the head's API.
ENDPOINT_PROBE = r"""
import json, sys, urllib.error, urllib.request
base, out = sys.argv[1], {}
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
print(json.dumps(out))
"""


def ping_fix(verdict: str, mtu: int) -> str:
    return {
        "too_big": f"a device on the path has MTU below {mtu} (bond, slaves, switch port): see check 'bond'",
        "no_reply": "no route or no link over the QSFP side: check 'bond' on both nodes and the cable",
    }.get(verdict, "check that `ping` and the bond exist on the source node")


def test_ping_mtu(node, cluster):
    """Jumbo frames get through unfragmented from every peer."""
    problems = Problems(node.name)
    mtu = int(node.spec.get("mtu", 9000))
    bond = node.spec.get("bond_name", "bond0")
    for source in cluster.others(node.name):
        ping = source.run(
            f"timeout 20 ping -M do -s {mtu - 28} -c 2 -W 2 -I {shlex.quote(bond)} {node.spec.qsfp_ip}", timeout=30
        )
        verdict = parse_ping(ping.stdout + ping.stderr)
        if not ping.ok or verdict != "ok":
            problems.add(f"ping from {source.name} ({mtu}-byte frames, do-not-fragment)", "2 replies",
                         f"{verdict}: {ping.brief}", ping_fix(verdict, mtu))
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


def rdma_settings(peer) -> tuple[str, str] | None:
    text = peer.read_root_file(ROCE_ENV)
    if text is None:
        return None
    env = parse_env_file(text)
    hcas = parse_hca_list(env.get("NCCL_IB_HCA", ""))
    gid = env.get("NCCL_IB_GID_INDEX", "")
    return (hcas[0][0], gid) if hcas and gid.isdigit() else None


def test_rdma(cluster, worker_name):
    """An RC ping-pong between the head and this worker, on the detected HCA and GID."""
    worker, head = cluster.node(worker_name), cluster.head
    problems = Problems(worker.name)
    settings = {peer.name: rdma_settings(peer) for peer in (head, worker)}
    for name, found in settings.items():
        if found is None:
            problems.add(f"{ROCE_ENV} on {name}", "NCCL_IB_HCA and NCCL_IB_GID_INDEX", "missing or empty",
                         f"see check 'roce_gid' on {name}")
    problems.check()
    (head_hca, head_gid), (worker_hca, worker_gid) = settings[head.name], settings[worker.name]
    port = RDMA_BASE_PORT + int(worker.spec.get("node_rank", 1))
    if not worker.run("command -v ibv_rc_pingpong").ok:
        pytest.fail(f"{worker.name}: ibv_rc_pingpong: expected installed, found missing; "
                    "fix: install ibverbs-utils (roles/rdma)", pytrace=False)
    server = worker.start(f"timeout 30 ibv_rc_pingpong -d {worker_hca} -g {worker_gid} -n 5 -p {port}")
    try:
        time.sleep(1.5)
        # The server may need a moment to listen: retry the connect, not the exchange.
        client = head.run(
            f"for i in 1 2 3 4 5; do timeout 20 ibv_rc_pingpong -d {head_hca} -g {head_gid} -n 5 -p {port} "
            f"{worker.spec.qsfp_ip} && exit 0; rc=$?; [ $rc -eq 124 ] && exit $rc; sleep 1; done; exit 1",
            timeout=60,
        )
    finally:
        served = server.wait(timeout=40)
    fix = ("check 'roce_gid' on both nodes (a wrong GID index stalls RoCEv2, seed 002), "
           "'memlock' (registration needs unlimited memlock) and the link")
    if not client.ok:
        problems.add(f"client on {head.name} ({head_hca} gid {head_gid})", "5 round trips",
                     client.brief, fix)
    if not served.ok:
        problems.add(f"server on {worker.name} ({worker_hca} gid {worker_gid})", "5 round trips",
                     served.brief, fix)
    problems.check()


def endpoint_problems(probe: dict, served_name: str | None) -> list[tuple[str, str, str]]:
    """(what, expected, found) for each way the probe's answer falls short."""
    found = []
    if probe.get("health") != 200:
        found.append(("/health", "200", probe.get("health", probe.get("health_error", "no answer"))))
    models = probe.get("models")
    if not models:
        found.append(("/v1/models", "JSON with a non-empty data list",
                      probe.get("models_error", models if models is not None else "no data list")))
    elif served_name and served_name not in models:
        found.append(("/v1/models", f"model id {served_name}", models))
    return found


def test_openai_endpoint(cluster, head_name):
    """The head's API answers over the QSFP side, asked from every worker."""
    head = cluster.node(head_name)
    problems = Problems(head.name)
    port = int(head.spec.get("api_port", 8000))
    url = f"http://{head.spec.qsfp_ip}:{port}"
    served = head.spec.get("serving_served_model_name")
    for worker in cluster.workers:
        answer = worker.run(f"python3 -c {shlex.quote(ENDPOINT_PROBE)} {url}", timeout=40)
        try:
            probe = json.loads(answer.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            problems.add(f"probe from {worker.name}", "a JSON line", answer.brief, "python3 is needed on the nodes")
            continue
        for what, expected, found in endpoint_problems(probe, served):
            problems.add(f"{url}{what} from {worker.name}", expected, found,
                         f"startup takes 3-19 minutes; otherwise see `journalctl -u {SERVING_UNIT}` on "
                         f"{head.name} and check 'serving_unit' on every node (the head waits for all workers)")
    problems.check()
