"""Post-deploy verification of a spark-cluster, from the deploy's own inventory.

    pytest tests/verify --inventory inventory/spark2.py [--data KEY=VALUE ...] [--group-data DIR]
                        [--report-json reports/verify.json] [--junitxml reports/verify.xml]

It reads the cluster as the deploy does: the same inventory, group_data
(the checkout's, beside the inventory, and --group-data), --data overrides
and settings check, and ~/.ssh/config as pyinfra's ssh connector honours it.

Every check reads live state from the nodes over their SSH endpoints (the
QSFP network is only ever used from one node to another). Root reads use sudo
with the password from --ask-sudo-password (a prompt), --sudo-password-file
(mode 600), SPARK_SUDO_PASSWORD, or the inventory's sudo_password (the lab):
never from a command line.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
# The checks derive each node's fabric as the roles do (spark_cluster.fabric)
# and read the network role's defaults (roles/network/defaults.py).
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(1, str(REPO_ROOT))

from sparkverify.inventory import load_cluster  # noqa: E402
from sparkverify.remote import Node, VerifyEnvironmentError  # noqa: E402
from sparkverify.report import ResultBook, format_summary, message_of, write_json  # noqa: E402
from sparkverify.sudo_password import session_password  # noqa: E402

DEFAULT_REPORT = "reports/verify.json"
# Parameter names that select nodes; the check name is the test name minus "test_".
NODE_PARAMS = ("node_name", "worker_name", "head_name")


def pytest_addoption(parser):
    group = parser.getgroup("spark-cluster verify")
    group.addoption("--inventory", default=None,
                    help="pyinfra inventory of the cluster to verify (e.g. inventory/spark2.py)")
    group.addoption("--data", action="append", default=[], metavar="KEY=VALUE",
                    help="override a setting as the deploy's `pyinfra ... --data KEY=VALUE` did (repeatable)")
    group.addoption("--group-data", action="append", default=[], metavar="DIR",
                    help="read group_data from this folder too, as the deploy's --group-data (repeatable)")
    group.addoption("--ask-sudo-password", action="store_true", default=False,
                    help="ask the nodes' sudo password once, on the terminal")
    group.addoption("--sudo-password-file", default=None,
                    help="read the nodes' sudo password from this file (mode 600: nobody else may read it)")
    group.addoption("--report-json", default=DEFAULT_REPORT,
                    help=f"where to write the JSON report (default {DEFAULT_REPORT})")


class Cluster:
    def __init__(self, inventory: str, sudo_password: str | None = None, data=(), group_data=()):
        self.inventory = inventory
        try:
            self.specs = load_cluster(inventory, REPO_ROOT, data, group_data)
        except Exception as error:  # one line, before any host is touched
            raise pytest.UsageError(f"tests/verify: cannot load inventory {inventory}: {error}") from None
        self._nodes = {spec.name: Node(spec, REPO_ROOT, sudo_password) for spec in self.specs}

    @property
    def names(self) -> list[str]:
        return [spec.name for spec in self.specs]

    def node(self, name: str) -> Node:
        return self._nodes[name]

    @property
    def head(self) -> Node:
        return self._nodes[self.specs[0].name]

    @property
    def workers(self) -> list[Node]:
        return [self._nodes[spec.name] for spec in self.specs[1:]]

    def others(self, name: str) -> list[Node]:
        return [node for n, node in self._nodes.items() if n != name]


def _cluster(config) -> Cluster:
    cluster = getattr(config, "_spark_cluster", None)
    if cluster is None:
        inventory = config.getoption("--inventory")
        if not inventory:
            raise pytest.UsageError("tests/verify needs --inventory, e.g. --inventory inventory/spark2.py")
        try:
            password = session_password(config.getoption("--sudo-password-file"),
                                        config.getoption("--ask-sudo-password"))
        except VerifyEnvironmentError as error:
            raise pytest.UsageError(f"tests/verify: {error}") from None
        cluster = config._spark_cluster = Cluster(inventory, password, config.getoption("--data"),
                                                  config.getoption("--group-data"))
    return cluster


# Filled by the report hooks, which pytest calls without the config.
RESULTS = ResultBook()


def pytest_configure(config):
    config._spark_results = RESULTS


def pytest_sessionstart(session):
    # Fail at once, in one line, rather than once per test module; at session
    # start rather than at option parsing, so `pytest tests/verify --help` works.
    _cluster(session.config)


def pytest_generate_tests(metafunc):
    cluster = None
    for param in NODE_PARAMS:
        if param in metafunc.fixturenames:
            cluster = cluster or _cluster(metafunc.config)
            names = {
                "node_name": cluster.names,
                "worker_name": cluster.names[1:],
                "head_name": cluster.names[:1],
            }[param]
            metafunc.parametrize(param, names, ids=names)


def pytest_collection_modifyitems(items):
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        node = next((params[p] for p in NODE_PARAMS if p in params), "cluster")
        item.user_properties.append(("node", node))
        item.user_properties.append(("check", item.originalname.removeprefix("test_")))


@pytest.fixture(scope="session")
def cluster(request) -> Cluster:
    return _cluster(request.config)


@pytest.fixture
def node(cluster, node_name) -> Node:
    return cluster.node(node_name)


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem):
    # A node we could not even look at fails its check with the reason, never skips.
    try:
        return (yield)
    except VerifyEnvironmentError as error:
        reason = str(error)
    pytest.fail(reason, pytrace=False)


def pytest_runtest_logreport(report):
    props = dict(report.user_properties)
    if "check" not in props:
        return
    if report.when != "call" and report.outcome == "passed":
        return
    figures = {key: value for key, value in props.items() if key not in ("node", "check", "detail")}
    RESULTS.record(props["node"], props["check"], report.outcome,
                   message_of(report) if report.outcome != "passed" else "",
                   report.duration, str(props.get("detail", "")), nodeid=report.nodeid, figures=figures)


def pytest_terminal_summary(terminalreporter, config):
    cluster = getattr(config, "_spark_cluster", None)
    results = config._spark_results.results()
    if config.option.collectonly or (cluster is None and not results):
        return
    terminalreporter.section("spark-cluster verify")
    terminalreporter.write_line(format_summary(results, cluster.names if cluster else []))
    for result in results:
        if result.detail:  # what a check measured (record_property("detail", ...))
            terminalreporter.write_line(f"{result.check} on {result.node}: {result.detail}")
    path = Path(config.getoption("--report-json"))
    terminalreporter.write_line(f"JSON report: {path}")


def pytest_sessionfinish(session):
    config = session.config
    cluster = getattr(config, "_spark_cluster", None)
    if cluster is None or config.option.collectonly:
        return
    path = Path(config.getoption("--report-json"))
    write_json(path, config._spark_results.results(), cluster.inventory)
