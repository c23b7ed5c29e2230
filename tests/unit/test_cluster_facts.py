"""spark_cluster/cluster_facts under pyinfra's real concurrency: one greenlet per
host, arriving together, as `pyinfra inventory deploy.py` runs the deploy code."""

import gevent
import pytest
from collect_ops import _connected_state, cluster
from pyinfra.api import Config
from pyinfra.api.host import Host
from pyinfra.api.facts import FactBase
from pyinfra.context import config, ctx_config, ctx_host, ctx_state, host

from spark_cluster.account import Escalation, UserAccount
from spark_cluster.batch_fact import Batch, want
from spark_cluster.cluster_facts import host_fact, member_fact, read_ahead, sudo_refusal, sudo_refused


class Kernel(FactBase):
    def command(self):
        return "uname -r"


class Probe:
    """A fake get_fact that takes a while (it yields, as an SSH round trip does)."""

    def __init__(self):
        self.calls, self.in_flight, self.most_in_flight, self.sudo = [], 0, 0, []

    def __call__(self, host, cls, *args, **kwargs):
        self.calls.append(host.name)
        self.sudo.append(config.SUDO)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        gevent.sleep(0.01)
        self.in_flight -= 1
        return f"kernel of {host.name}"


def run_on_every_host(count, monkeypatch, body, limit=None, fake=None, roles=()):
    """(fake, {host: body's result}) with `body` run on every host at once, after
    read_ahead(*roles); `fake` answers Host.get_fact (a Probe unless given)."""
    probe = fake or Probe()
    monkeypatch.setattr(Host, "get_fact", lambda host, cls, *args, **kwargs: probe(host, cls, *args, **kwargs))
    inventory, state = _connected_state(cluster(count), limit)

    def on(host):
        with ctx_state.use(state), ctx_config.use(Config(SUDO=True)), ctx_host.use(host):
            if roles:
                read_ahead(*roles)
            return body()

    greenlets = {host.name: gevent.spawn(on, host) for host in inventory.get_active_hosts()}
    gevent.joinall(list(greenlets.values()), raise_error=True)
    return probe, {name: greenlet.value for name, greenlet in greenlets.items()}


@pytest.mark.parametrize("count", [2, 4])
def test_every_member_is_asked_once_however_many_hosts_ask(count, monkeypatch):
    probe, results = run_on_every_host(count, monkeypatch, lambda: member_fact(Kernel))
    names = [f"spark-{i}" for i in range(1, count + 1)]
    assert sorted(probe.calls) == names, "no host asks again what another host is already asking"
    expected = {name: f"kernel of {name}" for name in names}
    assert all(result == expected for result in results.values())


def test_members_are_asked_at_once_with_the_callers_sudo(monkeypatch):
    probe, _ = run_on_every_host(4, monkeypatch, lambda: member_fact(Kernel))
    assert probe.most_in_flight == 4, "one member after the other would grow with the node count"
    assert probe.sudo == [True] * 4, "a fresh greenlet must not fall back to pyinfra's default config"


def test_members_outside_the_limit_are_none_and_never_connected(monkeypatch):
    probe, results = run_on_every_host(4, monkeypatch, lambda: member_fact(Kernel), limit={"spark-3"})
    assert probe.calls == ["spark-3"]
    assert results["spark-3"] == {"spark-1": None, "spark-2": None, "spark-3": "kernel of spark-3", "spark-4": None}


def test_a_hosts_own_fact_is_asked_once_for_all_its_roles(monkeypatch):
    def two_roles_read_it():
        return [host_fact(Kernel), host_fact(Kernel)]

    probe, results = run_on_every_host(2, monkeypatch, two_roles_read_it)
    assert sorted(probe.calls) == ["spark-1", "spark-2"]
    assert results["spark-2"] == ["kernel of spark-2"] * 2


def test_a_failed_gathering_fails_every_waiting_host(monkeypatch):
    def broken(host, cls, *args, **kwargs):
        gevent.sleep(0.01)
        raise RuntimeError("connection lost")

    inventory, state = _connected_state(cluster(2), None)
    monkeypatch.setattr(Host, "get_fact", broken)

    def on(host):
        with ctx_state.use(state), ctx_host.use(host):
            try:
                member_fact(Kernel)
            except RuntimeError as error:
                return str(error)

    greenlets = [gevent.spawn(on, host) for host in inventory.get_active_hosts()]
    gevent.joinall(greenlets)
    assert [greenlet.value for greenlet in greenlets] == ["connection lost", "connection lost"]


class Uptime(FactBase):
    def command(self):
        return "cat /proc/uptime"


class ReadAheadNodes:
    """Fake nodes for the read-ahead: every call is one round trip, noted with its sudo."""

    def __init__(self, refusing=()):
        self.trips = []
        self.refusing = set(refusing)  # nodes whose sudo refuses the run's password

    def __call__(self, host, cls, *args, **kwargs):
        sudo = kwargs.get("_sudo", config.SUDO)
        self.trips.append((host.name, cls.__name__, sudo))
        gevent.sleep(0.01)
        if cls is UserAccount:
            return {"home": f"/home/{kwargs['user']}", "group": "spark", "groups": []}
        if cls is Batch:
            if host.name in self.refusing:
                return {}  # sudo never ran the script: no answer at all
            return {item.key: 0 if item.fact is Escalation else f"{item.fact.__name__} {item.kwargs} of {host.name}"
                    for item in kwargs["wants"]}
        return f"{cls.__name__} alone of {host.name}"

    def of(self, name):
        return [(cls, sudo) for host, cls, sudo in self.trips if host == name]


class KernelRole:
    @staticmethod
    def wants(account):
        return [want(Kernel)]


class HomeRole:
    @staticmethod
    def wants(account):
        return [want(Kernel), want(Uptime)] + ([want(Kernel, home=account()["home"])] if account() else [])


def read_ahead_run(count, monkeypatch, roles, body, limit=None):
    return run_on_every_host(count, monkeypatch, body, limit, fake=ReadAheadNodes(), roles=roles)


@pytest.mark.parametrize("count", [2, 4])
def test_read_ahead_asks_each_node_once_for_everything_its_roles_read(count, monkeypatch):
    def roles_read():
        return member_fact(Kernel)[host.name], host_fact(Uptime), host_fact(Kernel, home="/home/spark")

    nodes, results = read_ahead_run(count, monkeypatch, [KernelRole, HomeRole], roles_read)
    for i in range(1, count + 1):
        name = f"spark-{i}"
        assert nodes.of(name) == [("UserAccount", False), ("Batch", True)], \
            "two round trips per node: the account without sudo, then one batch with it"
        assert results[name] == (f"Kernel {{}} of {name}", f"Uptime {{}} of {name}",
                                 f"Kernel {{'home': '/home/spark'}} of {name}")


def test_read_ahead_skips_the_account_when_no_role_needs_it(monkeypatch):
    nodes, _ = read_ahead_run(2, monkeypatch, [KernelRole], lambda: host_fact(Kernel))
    assert nodes.of("spark-1") == [("Batch", True)]


def test_a_fact_no_role_named_is_still_asked_on_its_own(monkeypatch):
    nodes, results = read_ahead_run(2, monkeypatch, [KernelRole], lambda: host_fact(Uptime))
    assert nodes.of("spark-2") == [("Batch", True), ("Uptime", True)]
    assert results["spark-2"] == "Uptime alone of spark-2"


def test_a_node_that_refuses_sudo_is_asked_once_then_nothing_more(monkeypatch, caplog):
    """Its batch had no answer, not even `id -u`: one line says so, the
    cluster's views leave it out (as if outside --limit), and its own reads
    get each fact's default without another sudo attempt."""
    fake = ReadAheadNodes(refusing={"spark-2"})

    def roles_read():
        return member_fact(Kernel), host_fact(Uptime), sudo_refused(host.name)

    nodes, results = run_on_every_host(2, monkeypatch, roles_read, None, fake=fake, roles=[KernelRole, HomeRole])
    assert nodes.of("spark-2") == [("UserAccount", False), ("Batch", True)]
    assert results["spark-2"] == ({"spark-1": "Kernel {} of spark-1", "spark-2": None}, None, True)
    assert results["spark-1"][2] is False
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == [sudo_refusal("spark-2", "spark")]


def test_read_ahead_reaches_only_the_members_inside_the_limit(monkeypatch):
    nodes, results = read_ahead_run(4, monkeypatch, [KernelRole], lambda: member_fact(Kernel), limit={"spark-2"})
    assert {name for name, _, _ in nodes.trips} == {"spark-2"}
    assert results["spark-2"]["spark-1"] is None
