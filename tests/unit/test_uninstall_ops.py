"""uninstall.py's operations, collected offline from fake nodes: a converged
node is taken apart in the right order (the watcher before the engine, the
owner's network configuration back before netplan applies, the closing check
last), a clean node gets no operation at all (a second uninstall changes
nothing), and the model and the image go only when asked."""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import pytest
from collect_ops import cluster, collect
from test_layering import role_order

from roles import leftovers
from roles.distribute import uninstall as distribute_uninstall
from spark_cluster.model_cache import model_cache_dir
from roles.network import uninstall as network_uninstall
from roles.network.checks import NM_UNMANAGED_FILE
from roles.network.facts import parse_links
from roles.network.settings import SYSCTL_FILE
from roles.rdma import MANAGED_PATHS as RDMA_PATHS
from roles.rdma import MODULES_LOAD_FILE
from roles.serving import MANAGED_PATHS as SERVING_PATHS
from roles.rdma import uninstall as rdma_uninstall
from roles.serving import defaults as serving_defaults
from roles.serving import uninstall as serving_uninstall
from roles.ssh import uninstall as ssh_uninstall
from roles.standin import defaults as standin_defaults
from roles.standin import uninstall as standin_uninstall
from spark_cluster import schema
from spark_cluster.caches import hf_home
from spark_cluster.engine_image import standin_tag
from spark_cluster.fabric import QSFP_NETDEVS
from spark_cluster.qsfp_owners import OWN_NETPLAN_FILE, TAKEOVER_DIR, Claim

REPO = Path(__file__).resolve().parents[2]
HOME = "/home/spark"
RAILS = ["enp1s0f1np1", "enP2p1s0f1np1"]
MODEL = "deepseek-ai/DeepSeek-V4-Flash"


class Checks:
    """leftovers as the test harness runs a role (wants, apply)."""

    wants = staticmethod(leftovers.wants)
    apply = staticmethod(leftovers.check)


ROLES = (serving_uninstall, distribute_uninstall, standin_uninstall, ssh_uninstall, rdma_uninstall,
         network_uninstall, Checks)


def uninstall_order() -> list[str]:
    """The steps in the order uninstall.py runs them (`<module>.apply()` / `.check()` calls)."""
    calls = []
    for node in ast.walk(ast.parse((REPO / "uninstall.py").read_text())):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.attr in ("apply", "check")):
            calls.append((node.lineno, node.func.value.id))
    return [name for _, name in sorted(calls)]


def link_lines(name, addresses=(), mode="", master=""):
    return [f"link={name} present=1 carrier=1 operstate=up mtu=9000 master={master} slaves= mode={mode} nm=unmanaged",
            *(f"address={a} on={name}" for a in addresses)]


class Node:
    """A fake node: the paths that exist, its units, links, blocks, images."""

    def __init__(self, number: int, converged: bool):
        self.files: set[str] = set()
        self.dirs: set[str] = set()
        self.running: set[str] = set()
        self.enabled: set[str] = set()
        self.images: dict[str, str] = {}
        self.blocks: dict[str, list[str]] = {}
        self.authorized = ["ssh-ed25519 AAAAowner owner@laptop"]
        addresses = {RAILS[0]: [f"10.0.0.{number}/24"], RAILS[1]: [f"10.0.1.{number}/24"]}
        self.netplan: list[str] | None = None
        self.claims: list[Claim] = []  # other configurations of the QSFP ports (QsfpOwners)
        self.addresses = addresses
        self.link_lines = [line for name in QSFP_NETDEVS
                           for line in link_lines(name, addresses.get(name, []) if converged else [])]
        if converged:
            self.files |= set(leftovers.owned_paths(HOME)) - {
                serving_defaults.CONFIG_DIR, *rdma_uninstall.OWNED_DIRS, standin_uninstall.OWNED_PATHS[1],
                TAKEOVER_DIR}
            self.dirs |= {serving_defaults.CONFIG_DIR, *rdma_uninstall.OWNED_DIRS, standin_uninstall.OWNED_PATHS[1]}
            units = serving_uninstall.UNIT_NAMES
            self.running |= set(units)
            self.enabled |= set(units)
            self.images[standin_tag()] = "sha256:standin"
            self.blocks = {"/etc/ssh/ssh_known_hosts": ["spark-1,10.0.0.1 ssh-ed25519 AAAA"],
                           f"{HOME}/.ssh/config": ["Host spark-2 10.0.0.2"]}
            self.authorized.append("ssh-ed25519 AAAAcluster spark-cluster@spark")
            self.netplan = ["network:", "  version: 2", "  ethernets:",
                            *(f"    {rail}:\n      addresses: [{addresses[rail][0]}]" for rail in RAILS)]
            self.netplan = "\n".join(self.netplan).splitlines()
            self.dirs.add(f"{hf_home(HOME)}/hub/models--{MODEL.replace('/', '--')}")

    def fact(self, cls, kwargs):
        name, path = cls.__name__, kwargs.get("path")
        if name == "UserAccount":
            return {"home": HOME, "group": "spark", "groups": ["spark", "docker"]}
        if name == "File":
            return {"mode": 644, "user": "root", "group": "root"} if path in self.files else None
        if name == "Directory":
            return {"mode": 755, "user": "root", "group": "root"} if path in self.dirs else None
        if name == "Sha1File":
            return "0" * 40 if path in self.files else None
        if name == "SystemdStatus":
            return {unit: unit in self.running for unit in kwargs["services"]}
        if name == "SystemdEnabled":
            return {unit: unit in self.enabled for unit in kwargs["services"]}
        if name == "QsfpLinks":
            return parse_links(self.link_lines)
        if name == "QsfpOwners":
            return self.claims
        if name == "FileContents":
            return self.netplan if path == OWN_NETPLAN_FILE else None
        if name == "Block":
            return self.blocks.get(path, [])
        if name == "FindInFile":
            return [line for line in self.authorized if re.search(kwargs["pattern"], line)]
        if name == "DockerImageId":
            return self.images.get(kwargs["image"])
        if name == "LeftBehind":
            return ([f"unit {unit}" for unit in kwargs["units"] if unit in self.enabled]
                    + [f"path {p}" for p in kwargs["paths"] if p in self.files | self.dirs])
        if name == "TmpDir":
            return "/tmp"
        if name in ("Md5File", "Sha256File", "Link"):
            return None
        raise AssertionError(f"unexpected fact {name} {kwargs}")


def uninstall(monkeypatch, nodes, **settings):
    hosts = cluster(len(nodes), serving_standin=True, serving_model=MODEL, **settings)
    return collect(hosts, lambda name, cls, kwargs: nodes[name].fact(cls, kwargs), monkeypatch, ROLES)


def would_run(ops):
    """The operations whose `_if` holds before anything ran (what a run would change)."""
    kept = []
    for name, text, arguments in ops:
        conditions = arguments.get("_if") or []
        conditions = conditions if isinstance(conditions, list) else [conditions]
        if all(condition() for condition in conditions) and text:
            kept.append((name, text))
    return kept


def release_args(command):
    """qsfp_release.sh's arguments in its `sh -c TEXT NAME ARGS...` command."""
    return shlex.split(command)[4:]


def names(ops):
    return [name.split(" | ", 1)[-1] for name, *_ in ops]


def test_a_converged_node_is_taken_apart_in_order(monkeypatch):
    ops = uninstall(monkeypatch, {"spark-1": Node(1, True), "spark-2": Node(2, True)})["spark-1"]
    steps = names(ops)

    def at(words):
        found = [index for index, step in enumerate(steps) if words in step]
        assert found, (words, steps)
        return found[0]

    # The watcher first (it would start the engine again), the units' files after both stopped.
    assert at("Stop and disable spark-serving-watch.service") < at("Stop and disable spark-serving.service") \
        < at(f"Remove {serving_defaults.UNIT_FILE}") < at("Reload systemd without the serving units")
    # The owner's configuration back before netplan applies what is left; the check last.
    assert at(f"Remove {OWN_NETPLAN_FILE}") < at("Release the QSFP ports")
    assert steps[-1] == "Nothing of spark-cluster is left (units, files, netplan)"
    texts = dict((name.split(" | ", 1)[-1], text) for name, text, _ in ops)
    release = release_args(texts[steps[at("Release the QSFP ports")]])
    for word in ("address=enp1s0f1np1:10.0.0.1/24", "address=enP2p1s0f1np1:10.0.1.1/24",
                 "port=enp1s0f1np1", "port=enP2p1s0f1np1"):
        assert word in release, word
    assert not [word for word in release if word.startswith("bond=")]
    # Every path of ours is removed, and only paths of ours.
    removed = {step.split(" ", 1)[1] for step in steps if step.startswith("Remove /") and " " not in step[7:]}
    assert removed == set(leftovers.owned_paths(HOME)) - {serving_defaults.CONFIG_DIR, TAKEOVER_DIR}
    assert f"rmdir --ignore-fail-on-non-empty {serving_defaults.CONFIG_DIR}" in texts.values()
    # ib_uverbs goes with its modules-load file: a redeploy then loads it and writes the file again.
    assert at(f"Remove {MODULES_LOAD_FILE}") < at("Unload ib_uverbs")
    assert texts[steps[at("Unload ib_uverbs")]] == "modprobe -r ib_uverbs 2>/dev/null || true"
    # The admin's own key stays; the cluster's goes; both managed blocks go.
    assert "The cluster key may no longer log in as the admin" in steps
    assert "Remove the peers from ~/.ssh/config" in steps
    assert "Remove the cluster's host keys from /etc/ssh/ssh_known_hosts" in steps
    # Data stays unless asked.
    assert not [step for step in steps if "image" in step.lower() and "Remove the engine" in step]
    assert not [step for step in steps if "Hugging Face" in step]


def test_a_clean_node_gets_no_operation_so_a_second_uninstall_changes_nothing(monkeypatch):
    ops = uninstall(monkeypatch, {"spark-1": Node(1, False), "spark-2": Node(2, False)})
    assert {name: would_run(host_ops) for name, host_ops in ops.items()} == {"spark-1": [], "spark-2": []}


def test_the_model_and_the_image_go_only_when_asked(monkeypatch):
    nodes = {"spark-1": Node(1, True), "spark-2": Node(2, True)}
    ops = uninstall(monkeypatch, nodes, uninstall_remove_model=True, uninstall_remove_images=True)["spark-2"]
    texts = {name.split(" | ", 1)[-1]: text for name, text, _ in ops}
    image = texts[f"Remove the engine image {standin_tag()} (uninstall_remove_images)"]
    assert image == f"docker image rm {standin_tag()}"
    model = texts[f"Remove {MODEL} from the Hugging Face cache (uninstall_remove_model)"]
    assert model == f"rm -rf {model_cache_dir(hf_home(HOME), MODEL)}"
    # The image goes after the engine that ran it stopped.
    steps = names(ops)
    assert steps.index("Stop and disable spark-serving.service") < steps.index(
        f"Remove the engine image {standin_tag()} (uninstall_remove_images)")


def test_takeover_backups_go_back_before_the_ports_are_released(monkeypatch):
    nodes = {"spark-1": Node(1, False), "spark-2": Node(2, False)}
    nodes["spark-2"].dirs.add(TAKEOVER_DIR)
    ops = uninstall(monkeypatch, nodes)
    assert would_run(ops["spark-1"]) == []
    steps = names(ops["spark-2"])
    assert steps.index(f"Put back the QSFP configurations moved aside under {TAKEOVER_DIR}") < steps.index(
        next(step for step in steps if step.startswith("Release the QSFP ports")))
    assert steps[-1] == "Nothing of spark-cluster is left (units, files, netplan)"


def owner_put_back(node: Node) -> Node:
    """A node after an uninstall put a takeover's backup back: the owner's
    netplan file gives the rails the very addresses the inventory does."""
    node.link_lines = [line for name in QSFP_NETDEVS for line in link_lines(name, node.addresses.get(name, []))]
    content = "network:\n  version: 2\n  ethernets:\n" + "".join(
        f"    {rail}:\n      addresses: [{node.addresses[rail][0]}]\n" for rail in RAILS)
    node.claims = [Claim("netplan", "/etc/netplan/40-cx7.yaml", tuple(RAILS), content=content)]
    return node


def test_addresses_the_owners_configuration_claims_are_theirs_so_a_second_uninstall_changes_nothing(monkeypatch):
    """The lab's takeover node: the first uninstall put NVIDIA's file back, which
    gives the rails the inventory's addresses; they are the owner's now."""
    nodes = {"spark-1": Node(1, False), "spark-2": owner_put_back(Node(2, False))}
    assert {name: would_run(host_ops) for name, host_ops in uninstall(monkeypatch, nodes).items()} == {
        "spark-1": [], "spark-2": []}


def test_the_inventorys_addresses_left_on_unclaimed_ports_are_released(monkeypatch):
    """Without another owner (our file gone, an earlier release cut short), the
    addresses the inventory gives the rails are still ours to take off."""
    nodes = {"spark-1": Node(1, False), "spark-2": owner_put_back(Node(2, False))}
    nodes["spark-2"].claims = []
    ops = dict(would_run(uninstall(monkeypatch, nodes)["spark-2"]))
    release = next(text for name, text in ops.items() if "Release the QSFP ports" in name)
    assert {arg for arg in release_args(release) if arg.startswith("address=")} == {
        f"address={RAILS[0]}:10.0.0.2/24", f"address={RAILS[1]}:10.0.1.2/24"}


def test_a_bond_left_from_bond_mode_is_deleted_under_a_dual_subnet_inventory(monkeypatch):
    nodes = {"spark-1": Node(1, False), "spark-2": Node(2, False)}
    nodes["spark-1"].link_lines += link_lines("bond0", ["10.0.0.1/24"], mode="balance-xor")
    ops = dict(would_run(uninstall(monkeypatch, nodes)["spark-1"]))
    release = next(text for name, text in ops.items() if "Release the QSFP ports" in name)
    assert "bond=bond0" in release_args(release)


def test_the_drm_override_is_never_put_back(monkeypatch):
    """Putting it back would halve CUDA's memory and cost a reboot; absent, a
    redeploy's gpu role finds nothing to do (its only state is the file)."""
    ops = uninstall(monkeypatch, {"spark-1": Node(1, True), "spark-2": Node(2, True)})["spark-1"]
    override = schema.DEFAULTS["drm_override_file"]
    assert not [text for _, text, _ in ops if override in text or "modprobe.d" in text]
    assert "gpu" not in uninstall_order()


def test_uninstall_undoes_the_roles_in_the_reverse_of_the_deploy_order():
    steps = uninstall_order()
    assert steps[-1] == "leftovers"
    deployed = role_order((REPO / "deploy.py").read_text())
    undone = steps[:-1]
    assert undone == [role for role in reversed(deployed) if role in undone]
    # Every role that writes something has its undoing; caches, gpu and preflight keep theirs on purpose.
    assert sorted(set(deployed) - set(undone)) == ["caches", "gpu", "preflight"]


def test_the_paths_come_from_the_roles_own_constants():
    owned = leftovers.owned_paths(HOME)
    for path in [*SERVING_PATHS, *RDMA_PATHS, MODULES_LOAD_FILE, OWN_NETPLAN_FILE, SYSCTL_FILE, NM_UNMANAGED_FILE,
                 standin_defaults.STANDIN_DIR, standin_defaults.STANDIN_BUILDER, TAKEOVER_DIR,
                 f"{HOME}/.ssh/id_ed25519_spark_cluster"]:
        assert path in owned, path
    # Data stays: nothing under the caches, nothing of the owner's SSH files but the cluster key.
    assert [p for p in owned if p.startswith(HOME)] == ssh_uninstall.key_files(HOME)
    assert len(owned) == len(set(owned))


@pytest.mark.parametrize("key", ["uninstall_remove_model", "uninstall_remove_images"])
def test_the_uninstall_settings_keep_data_by_default(key):
    assert schema.DEFAULTS[key] is False
    assert schema.BY_KEY[key].problem("yes") is not None
