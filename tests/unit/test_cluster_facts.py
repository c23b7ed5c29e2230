"""spark_cluster/cluster_facts under pyinfra's real concurrency: one greenlet per
host, arriving together, as `pyinfra inventory deploy.py` runs the deploy code."""

import gevent
import pytest
from collect_ops import _connected_state, cluster
from pyinfra.api import Config
from pyinfra.api.host import Host
from pyinfra.api.facts import FactBase
from pyinfra.context import config, ctx_config, ctx_host, ctx_state

from spark_cluster.cluster_facts import host_fact, member_fact


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


def run_on_every_host(count, monkeypatch, body, limit=None):
    probe = Probe()
    monkeypatch.setattr(Host, "get_fact", lambda host, cls, *args, **kwargs: probe(host, cls))
    inventory, state = _connected_state(cluster(count), limit)

    def on(host):
        with ctx_state.use(state), ctx_config.use(Config(SUDO=True)), ctx_host.use(host):
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
