"""Facts gathered once per pyinfra run: of every cluster member, or of this host.

pyinfra runs the deploy code once per host (in parallel greenlets) and keeps
no fact cache, so a cluster-wide view is gathered here once and shared: every
host then decides from the same data, and each node answers each fact once.
The greenlets arrive together, so the first one gathers (from all members at
once) while the others wait for its result: asking every member from every
host would make the run grow with the square of the node count.

Reading another host's fact while collecting this host's operations is plain
`Host.get_fact` (pyinfra.api.facts._get_fact runs the command over that
host's own connection). But it would *connect* to a host that is not yet
connected, and `--limit` leaves the other hosts unconnected: those members
are reported as None instead, so a limited run never reaches outside its limit.

All of this is read while pyinfra collects operations, before any of them
runs: it is the state the run started from, which is what roles decide on.

Read ahead: each role names the facts it will read (its `wants(account)`),
deploy.py registers them (`read_ahead`), and the first read of a run on a
node asks that node for all of them in one command (batch_fact.Batch), after
one unprivileged command for the admin account when a role's wants call
`account()` (paths under the home depend on it). A no-op run then costs each
node two round trips, not one per fact.
A fact nobody named is still asked, on its own: naming only saves time.
"""

from __future__ import annotations

from typing import Any, Callable

import gevent
from gevent.event import AsyncResult
from pyinfra import host, logger
from pyinfra.context import ctx_config, ctx_host

from .account import Escalation, UserAccount
from .batch_fact import Batch, Want, fact_key, unique, want

SUDO_REFUSED = "sudo refused"
# id(state) -> (state, {cache key: value}); the state is kept so that an id
# reused by a later State (unit tests build many) never hits a stale entry.
_RUNS: dict[int, tuple[Any, dict]] = {}


def run_cache() -> dict:
    """A dict that lives exactly as long as this pyinfra run (State)."""
    state = host.state
    entry = _RUNS.get(id(state))
    if entry is None or entry[0] is not state:
        entry = _RUNS[id(state)] = (state, {})
    return entry[1]


def once_per_run(key, compute: Callable[[], Any]) -> Any:
    """compute() for the first caller of this run; later callers (other hosts'
    greenlets included) wait for that same result instead of computing again."""
    cache = run_cache()
    result = cache.get(key)
    if result is None:
        result = cache[key] = AsyncResult()
        try:
            result.set(compute())
        except BaseException as error:
            result.set_exception(error)
            raise
    return result.get()


def member_names() -> list[str]:
    members = host.data.get("cluster_members") or [{"name": host.name}]
    return [member["name"] for member in members]


def member_connected(name: str) -> bool:
    """Whether this run reaches `name` (it is in the inventory, inside --limit, and up)."""
    member = host.state.inventory.get_host(name, default=None)
    return member is not None and member.connected


def _on(member, call: Callable[[], Any], config) -> Any:
    # A greenlet of its own does not inherit the caller's host and config
    # (sudo settings live there): give it the member's, as pyinfra does.
    with ctx_config.use(config), ctx_host.use(member):
        return call()


def read_ahead(*roles) -> None:
    """Register the roles whose `wants(account)` are asked of each node in one batch;
    `account()` is the admin's UserAccount (or None)."""
    run_cache().setdefault("read ahead", [role.wants for role in roles])


def _node_answers(member) -> dict:
    """{fact key: value} of everything the registered roles will read on `member`."""
    planners = run_cache().get("read ahead")
    if not planners:
        return {}
    user = member.data.get("ssh_user")
    answers = {}

    def account():
        key = fact_key(UserAccount, {"user": user})
        if user and key not in answers:
            # getent needs no root: one unprivileged round trip, no password check.
            answers[key] = member.get_fact(UserAccount, user=user, _sudo=False)
        return answers.get(key)

    wanted = unique(item for plan in planners for item in plan(account))
    if not wanted:
        return answers
    # The batch's first command proves sudo worked. Without it the node is
    # asked nothing more: a refused password is tried once here, not once per
    # fact (each try a failed login in auth.log, towards a lockout).
    escalation = want(Escalation)
    answers.update(member.get_fact(Batch, wants=[escalation, *wanted], _ignore_errors=True) or {})
    if answers.get(escalation.key) != 0:
        run_cache().setdefault(SUDO_REFUSED, set()).add(member.name)
        logger.error(sudo_refusal(member.name, user))
    return answers


def sudo_refusal(name: str, user: str | None) -> str:
    return (f"{name}: sudo as {user!r} did not answer (a wrong sudo password, or {user} may not use sudo there): "
            "nothing more is asked or changed on this node; fix the password (spark-cluster --ask-sudo-password, "
            "pyinfra --use-sudo-password, or "
            f"sudo_password in the inventory) or run `usermod -aG sudo {user}` on it")


def sudo_refused(name: str) -> bool:
    """Whether `name` refused the admin's sudo in this run (it is then asked nothing more)."""
    return name in run_cache().get(SUDO_REFUSED, ())


def _answer(member, fact_cls, kwargs) -> Any:
    answers = once_per_run(("read ahead", member.name), lambda: _node_answers(member))
    key = fact_key(fact_cls, kwargs)
    if key in answers:
        return answers[key]
    if sudo_refused(member.name):
        # Its roles plan on empty facts; preflight's failing operation, the
        # first of the run for this node, keeps any of it from running.
        return fact_cls().default()
    return member.get_fact(fact_cls, **kwargs)


def _fact_and_kwargs(fact, kwargs):
    """(fact class, kwargs) from either a Want or a fact class and its kwargs."""
    return (fact.fact, fact.kwargs) if isinstance(fact, Want) else (fact, kwargs)


def member_fact(fact, **kwargs) -> dict[str, Any]:
    """{member name: fact value, or None when that member is not connected};
    `fact` is a fact class (with its kwargs) or a Want."""
    fact_cls, kwargs = _fact_and_kwargs(fact, kwargs)
    return once_per_run(("members", *fact_key(fact_cls, kwargs)), lambda: _gather(fact_cls, kwargs))


def _gather(fact_cls, kwargs) -> dict[str, Any]:
    inventory, config = host.state.inventory, ctx_config.get()
    names = member_names()
    asked = {
        name: gevent.spawn(_on, member, lambda member=member: _answer(member, fact_cls, kwargs), config)
        for name in names
        if member_connected(name) and (member := inventory.get_host(name))
    }
    gevent.joinall(list(asked.values()), raise_error=True)
    # A node that refused sudo is left out, as one outside --limit is: its
    # empty answers would read as a node that disagrees with every other.
    return {name: asked[name].value if name in asked and not sudo_refused(name) else None for name in names}


def host_fact(fact, **kwargs) -> Any:
    """This host's fact as the run found it, asked once however many roles read it;
    `fact` is a fact class (with its kwargs) or a Want."""
    fact_cls, kwargs = _fact_and_kwargs(fact, kwargs)
    return once_per_run(("host", host.name, *fact_key(fact_cls, kwargs)), lambda: _answer(host, fact_cls, kwargs))
