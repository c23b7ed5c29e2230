"""A fact of every cluster member, gathered once per pyinfra run.

pyinfra runs the deploy code once per host (in parallel greenlets) and keeps
no fact cache, so a cluster-wide view is gathered here once and shared: every
host then decides from the same data, and each node answers each fact once.

Reading another host's fact while collecting this host's operations is plain
`Host.get_fact` (pyinfra.api.facts._get_fact runs the command over that
host's own connection). But it would *connect* to a host that is not yet
connected, and `--limit` leaves the other hosts unconnected: those members
are reported as None instead, so a limited run never reaches outside its limit.
"""

from __future__ import annotations

from typing import Any

from pyinfra import host

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


def member_names() -> list[str]:
    members = host.data.get("cluster_members") or [{"name": host.name}]
    return [member["name"] for member in members]


def member_connected(name: str) -> bool:
    """Whether this run reaches `name` (it is in the inventory, inside --limit, and up)."""
    member = host.state.inventory.get_host(name, default=None)
    return member is not None and member.connected


def member_fact(fact_cls, **kwargs) -> dict[str, Any]:
    """{member name: fact value, or None when that member is not connected}."""
    cache = run_cache()
    key = ("fact", fact_cls.__module__, fact_cls.__qualname__, repr(sorted(kwargs.items())))
    if key in cache:
        return cache[key]
    values = {}
    for name in member_names():
        if not member_connected(name):
            values[name] = None
            continue
        values[name] = host.state.inventory.get_host(name).get_fact(fact_cls, **kwargs)
    # Greenlets may race to here: the first result stored is the one everybody uses.
    return cache.setdefault(key, values)
