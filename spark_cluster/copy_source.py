"""Which node each copied item (the model, the engine image) comes from (pure).

The deploy copies the model and the engine image node to node over QSFP.
Each item has its own source: the node named by distribute_source when
group_data sets one, else the first node in inventory order (the head first)
that holds the item (the model whole, the image at all). So a rebuilt head
receives both from a worker, and the model may be staged on one node and the
image on another. With no holder there is no source: preflight says how to
stage the item (roles/preflight/staging.py).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence


def choose_source(holdings: Mapping[str, Any], order: Sequence[str], explicit: str | None = None) -> str | None:
    """The node to copy an item from, or None when no node holds it.

    `holdings`: {node: what it holds of the item, None when it does not
    (a missing or partial model, an absent image, a node not reached)};
    `order`: the inventory's nodes, head first; `explicit`: distribute_source,
    which wins whatever the holdings say (the operator chose it).
    """
    if explicit:
        return explicit
    return next((name for name in order if holdings.get(name) is not None), None)
