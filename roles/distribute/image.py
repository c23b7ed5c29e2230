"""The engine image, relayed from the node that has it down a chain of receivers.

Desired state on every node that lacks the image or holds another one under
its name: the image is present with the source's image id (and, where the
Docker image store keeps it, the source's repo digest), loaded from the
source over QSFP, never pulled. Nothing moves when the ids already match.

The source sends the image once: the first receiver (member order, head
first) reads `docker save` from it, loads the stream and passes the same
bytes on to the next receiver, which does the same (files/image_relay.py),
so every link carries the image once and the receivers load it together
instead of the source sending it once per receiver. Every SSH hop is
spark_cluster/copy_ssh.py's: the cluster key, the verified host keys,
aes128-gcm.

Two operations on every receiver, one after the other on all of them
(pyinfra runs each operation on every host before the next):
1. the chain: only its first live receiver runs it (a receiver that failed
   earlier in this run is left out and the next one starts it), printing
   bytes, rate and ETA as the stream runs and a summary line at the end;
2. the check: this node's image id is the source's, else the operation
   fails saying why; a repo digest the source has and this node lacks is
   reported (docs/design.md, "The engine image's chain").
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from pyinfra import host, logger
from pyinfra.api.command import StringCommand
from pyinfra.api.exceptions import OperationError
from pyinfra.operations import python

from spark_cluster.cluster_facts import member_connected, member_fact
from spark_cluster.copy_report import record
from spark_cluster.copy_ssh import copy_ssh_argv
from spark_cluster.engine_image import (
    image_id_of,
    image_source,
    image_to_receive,
    member_named,
    member_order,
    needs_copy,
)
from spark_cluster.lost_nodes import failed_this_run
from spark_cluster.settings import cluster_settings

RELAY = Path(__file__).parent / "files" / "image_relay.py"
# Runs the relay's text from its first argument, so a hop can send itself on.
LAUNCHER = "import sys; exec(compile(sys.argv[1], 'image_relay.py', 'exec'))"
RESULT_KEY = "image_relay"  # the relay's result lines carry it
PROGRESS_EVERY_S = 5
# A 20-30 GB image at a few hundred MB/s takes minutes; a stuck link ends
# sooner (ServerAlive in copy_ssh): this bounds only a hung docker load.
RELAY_TIMEOUT_S = 4 * 3600
CHECK_TIMEOUT_S = 120
GIB = 1 << 30
# The image as docker reports it: id, size and repo digests on one line (JSON
# has no spaces here), then the image store's driver on the next (overlay2:
# the classic store; overlayfs: the containerd image store).
INSPECT_FORMAT = "{{.Id}} {{.Size}} {{json .RepoDigests}}"


# --- the plan (pure) ---------------------------------------------------------------


def relay_chain(order: Sequence[str], source: str, source_id: str | None,
                image_ids: Mapping[str, str | None], reachable: Iterable[str]) -> list[str]:
    """The receivers in the order the stream visits them: member order (head
    first), without the source, nodes this run cannot reach, and nodes that
    already hold the source's image id."""
    reachable = set(reachable)
    return [name for name in order
            if name != source and name in reachable and needs_copy(source_id, image_ids.get(name))]


def live_chain(chain: Sequence[tuple[str, str]], failed: Iterable[str]) -> list[tuple[str, str]]:
    """The chain without the receivers that failed earlier in this run; its
    first (name, address) starts it."""
    failed = set(failed)
    return [(name, address) for name, address in chain if name not in failed]


def save_command(image: str) -> str:
    return shlex.join(["docker", "save", image])


def inspect_command(image: str) -> str:
    """One line: the image's id, size and repo digests, then the image store's driver."""
    return (f"{shlex.join(['docker', 'image', 'inspect', '--format', INSPECT_FORMAT, image])}"
            " && docker info --format '{{.Driver}}'")


def relay_spec(image: str, home: str, source_address: str, chain: Sequence[tuple[str, str]],
               total: int) -> dict:
    """The first hop's spec (files/image_relay.py says what each key means)."""
    ssh = copy_ssh_argv(home)
    first, *rest = chain
    return {
        "node": first[0],
        "source": [*ssh, source_address, save_command(image)],
        "load": ["docker", "load"],
        "ssh": ssh,
        "next": [{"node": name, "address": address} for name, address in rest],
        "total": total,
        "progress_s": PROGRESS_EVERY_S,
        "launcher": LAUNCHER,
    }


def relay_command(spec: dict) -> str:
    return shlex.join(["python3", "-c", LAUNCHER, RELAY.read_text(), json.dumps(spec)])


def parse_inspect(lines: Sequence[str]) -> dict | None:
    """{id, size, repo_digests, store} from inspect_command's output, or None (no such image)."""
    lines = [line.strip() for line in lines if line.strip()]
    fields = lines[0].split(" ", 2) if lines else []
    if len(fields) != 3 or not fields[0].startswith("sha256:"):
        return None
    try:
        size, digests = int(fields[1]), json.loads(fields[2]) or []
    except ValueError:
        return None
    return {"id": fields[0], "size": size, "repo_digests": sorted(digests),
            "store": lines[1] if len(lines) > 1 else "unknown"}


def parse_results(lines: Iterable[str]) -> dict[str, dict]:
    """{node: its result} from the relay's output (every hop's result line travels back)."""
    results = {}
    for line in lines:
        line = line.strip()
        if line.startswith("{") and RESULT_KEY in line:
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if data.get(RESULT_KEY) == "result":
                results[data["node"]] = data
    return results


def relay_summary(image: str, source: str, chain: Sequence[str], results: Mapping[str, dict]) -> str:
    """The deploy summary's line: GiB, seconds and GiB/s of the first hop, and who loaded it."""
    first = results.get(chain[0]) if chain else None
    if not first:
        return f"image relay: {image} from {source}: no result from {chain[0] if chain else 'anyone'}"
    gib, seconds = first["bytes"] / GIB, first["seconds"]
    rate = gib / seconds if seconds > 0 else 0.0
    loaded = [name for name in chain if results.get(name, {}).get("loaded")]
    failed = [f"{name} ({results[name]['error'] or 'failed'})" if name in results else f"{name} (no result)"
              for name in chain if name not in loaded]
    line = (f"image relay: {image} from {source}: {gib:.2f} GiB in {seconds:.1f}s ({rate:.2f} GiB/s), "
            f"loaded on {', '.join(loaded) or 'none'}")
    return line + (f"; not loaded on {', '.join(failed)}" if failed else "")


def identity_problem(image: str, node: str, source: str, theirs: dict | None, ours: dict | None) -> str | None:
    """Why this node's image is not the source's (what, expected, found, fix), or None."""
    again = "run the deploy again (it relays the image to the nodes that lack it)"
    if theirs is None:
        return f"{image} is no longer on {source}, the image's source: put it back there, then {again}"
    if ours is None:
        return (f"{image} is not on {node} after the relay from {source} (expected image id {theirs['id']}); "
                f"the relay's output above says where the chain broke; {again}")
    if ours["id"] == theirs["id"]:
        return None
    stores = ""
    if ours["store"] != theirs["store"]:
        stores = (f": the nodes use different Docker image stores ({source}: {theirs['store']}, {node}: "
                  f"{ours['store']}; docker info's Storage Driver), which name the same image by different "
                  "ids (classic: the config digest; containerd: the manifest or index digest); "
                  "use one image store on every node")
    return (f"{image} on {node} has image id {ours['id']}, expected {source}'s {theirs['id']}{stores}; "
            f"{'then ' if stores else ''}{again}")


def digest_note(image: str, node: str, source: str, theirs: dict, ours: dict) -> str | None:
    """A repo digest the source has and this node lacks, said plainly (the id, checked, is the same)."""
    missing = sorted(set(theirs["repo_digests"]) - set(ours["repo_digests"]))
    if not missing:
        return None
    return (f"{image} on {node} has the source's image id {ours['id']} but not its repo digest "
            f"{', '.join(missing)} (image store here: {ours['store']}): Docker's classic store (overlay2) "
            "drops repo digests on docker load (moby/moby#22011) and cannot be given one without the "
            "registry; the image is the same (same id), docker image ls shows no digest for it here")


# --- the operations ------------------------------------------------------------------------


def _run(command: str, timeout_s: int, print_output: bool = False) -> tuple[bool, list[str], list[str]]:
    # As root, as the old `ssh | docker load` ran: docker load needs it before the
    # admin's new docker group reaches this session; ssh logs in as the admin with
    # the admin's key.
    ok, output = host.run_shell_command(StringCommand(command), _sudo=True,
                                        _sudo_password=host.data.get("_sudo_password"),
                                        _timeout=timeout_s, print_output=print_output)
    return ok, list(output.stdout_lines), list(output.stderr_lines)


def _inspect(image: str, where: str, command: str) -> dict | None:
    """inspect_command's answer; None when the image is not there; an
    OperationError when the command itself failed (the link, docker)."""
    ok, lines, errors = _run(command, CHECK_TIMEOUT_S)
    found = parse_inspect(lines)
    if found is None and not any("No such image" in line for line in errors):
        tail = " / ".join(errors[-3:]) or "no output"
        raise OperationError(f"reading {image}'s image id on {where} failed ({tail}); expected `docker image "
                             f"inspect` to answer there: check that docker runs on {where} (and the QSFP link "
                             "to it), then run the deploy again")
    return found


def _inspect_source(image: str, source: str, home: str, source_address: str) -> dict | None:
    return _inspect(image, source, shlex.join([*copy_ssh_argv(home), source_address, inspect_command(image)]))


def relay_image(image: str, source: str, source_address: str, chain: list[tuple[str, str]], home: str) -> None:
    """pyinfra callback (python.call): the chain's first live receiver runs it; the others wait for the check."""
    live = live_chain(chain, failed_this_run(host.state))
    if not live or live[0][0] != host.name:
        return
    theirs = _inspect_source(image, source, home, source_address)
    if theirs is None:
        raise OperationError(f"{image} is not on {source}, the image's source (docker image inspect found "
                             f"nothing there): put it back there, then run the deploy again")
    names = [name for name, _ in live]
    logger.info(f"    [{host.name}] image relay: {image} from {source} to {' -> '.join(names)}, "
                f"~{theirs['size'] / GIB:.2f} GiB (the image's size: the stream's is close to it)")
    spec = relay_spec(image, home, source_address, live, theirs["size"])
    ok, lines, _ = _run(relay_command(spec), RELAY_TIMEOUT_S, print_output=True)
    results = parse_results(lines)
    logger.info(f"    [{host.name}] " + relay_summary(image, source, names, results))
    for name in names:  # the run's closing summary (spark_cluster/copy_report.py)
        result = results.get(name) or {}
        if result.get("loaded"):
            record(host.state, image, name, int(result.get("bytes", 0)), float(result.get("seconds", 0)),
                   f"relayed from {source} ({' -> '.join(names)})")
    own = results.get(host.name)
    if not own or not own.get("loaded"):
        reason = own["error"] if own else "the relay reported nothing"
        raise OperationError(f"loading {image} from {source} on {host.name} failed: {reason}; "
                             "run the deploy again (it relays the image to the nodes that lack it)")
    if not ok:
        logger.warning(f"    [{host.name}] image relay: the image reached {host.name}, not every node after "
                       "it: their own check fails with the reason")


def check_image(image: str, source: str, source_address: str, home: str) -> None:
    """pyinfra callback (python.call): this node's image id is the source's."""
    theirs = _inspect_source(image, source, home, source_address)
    ours = _inspect(image, host.name, inspect_command(image))
    problem = identity_problem(image, host.name, source, theirs, ours)
    if problem:
        raise OperationError(problem)
    note = digest_note(image, host.name, source, theirs, ours)
    if note:
        logger.warning(f"    [{host.name}] {note}")
    digests = ", ".join(ours["repo_digests"]) or "none"
    logger.info(f"    [{host.name}] {image}: image id {ours['id']} as on {source}; repo digests {digests}")


def apply(account: dict) -> None:
    """The two operations on a node that lacks the source's image (see the module's docstring)."""
    receive = image_to_receive(host.data)
    if not receive:
        return
    image, source_id = receive
    s = cluster_settings(host.data)
    source = image_source(host.data)
    order = member_order(host.data)
    names = relay_chain(order, source["name"], source_id, member_fact(image_id_of(image)),
                        [name for name in order if member_connected(name)])
    chain = [(name, f"{s.ssh_user}@{member_named(host.data, name)['qsfp_ip']}") for name in names]
    source_address = f"{s.ssh_user}@{source['qsfp_ip']}"
    loads = f"Load {image} from {source['name']} over QSFP"
    python.call(
        name=f"{loads} (relay {' -> '.join([source['name'], *names])})",
        function=relay_image, image=image, source=source["name"], source_address=source_address,
        chain=chain, home=account["home"], _timeout=RELAY_TIMEOUT_S + 60,
    )
    python.call(
        name=f"{loads}: its image id is the source's",
        function=check_image, image=image, source=source["name"], source_address=source_address,
        home=account["home"], _timeout=2 * CHECK_TIMEOUT_S + 60,
    )
