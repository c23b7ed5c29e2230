"""Is what the engine needs staged somewhere? The model and the engine image (pure).

The deploy never downloads either: a person stages each once, on one node, and
the distribute role copies it to the others over QSFP from the first node that
holds it (spark_cluster/copy_source.py). When no node this run reaches holds
an item, every node that lacks it stops here, before anything changes, told
how to stage it; so does a node that must hold it itself (distribution off).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from spark_cluster.copy_source import choose_source, image_fix, model_fix
from spark_cluster.model_cache import describe_holding, model_whole

from .compare import Problem

NOT_REACHED = "not reached (outside --limit or unreachable)"


def _holders_text(described: Mapping[str, str], order: Sequence[str]) -> str:
    return "; ".join(f"{name} {described.get(name, NOT_REACHED)}" for name in order)


def _staging_problems(
    item: str,
    holdings: Mapping[str, Any],
    order: Sequence[str],
    *,
    holds: Callable[[Any], bool],
    describe: Callable[[Any], str],
    explicit: str | None,
    copied: bool,
    fix: Callable[[str, bool], str],
    where: str,
    setting: str,
) -> list[Problem]:
    """`holdings`: {reached node: what it holds of `item`}; nodes of `order`
    missing from it were not reached. `where`: where the item must lie;
    `fix(on, copied)`: how to put it on a node; `setting`: the one that turns copies on."""
    held = {name: value for name, value in holdings.items() if holds(value)}
    lacking = [name for name in order if name in holdings and name not in held]
    if not copied:
        return [Problem(name, item, f"{where} on this node ({setting} = False: nothing is copied)",
                        describe(holdings[name]), "node",
                        f"{fix('this node', False)}, or set {setting} = True to copy it from a node that holds it")
                for name in lacking]
    source = choose_source(held, order, explicit)
    if source is not None and source in held:
        return []
    described = {name: describe(value) for name, value in holdings.items()}
    if source is not None:  # distribute_source names a node that lacks it
        others = [name for name in order if name in held]
        other_fix = f"; or remove distribute_source: {others[0]}, which holds it, is then the source" if others else ""
        return [Problem(name, f"{item} on distribute_source {source}", where, described.get(source, NOT_REACHED),
                        "node", fix(source, True) + other_fix)
                for name in lacking]
    found = f"on no node ({_holders_text(described, order)})"
    unreached = [name for name in order if name not in holdings]
    limit_fix = (f"; or reach {', '.join(unreached)} (without --limit), if a node there holds it"
                 if unreached else "")
    return [Problem(name, item, f"{where} on one node at least", found, "node", fix("one node", True) + limit_fix)
            for name in lacking]


def image_problems(image: str, image_ids: Mapping[str, str | None], order: Sequence[str], *, user: str,
                   explicit: str | None = None, copied: bool = True) -> list[Problem]:
    """`image_ids`: {reached node: the image's id there, or None}."""
    return _staging_problems(
        f"engine image {image}", image_ids, order,
        holds=lambda image_id: image_id is not None,
        describe=lambda image_id: "absent" if image_id is None else f"present ({image_id.split(':')[-1][:12]})",
        explicit=explicit, copied=copied, fix=lambda on, copies: image_fix(image, user, on, copies),
        where="present", setting="distribute_image")


def model_problems(model: str, manifests: Mapping[str, dict | None], order: Sequence[str], *, user: str,
                   hf_home: str, explicit: str | None = None, copied: bool = True) -> list[Problem]:
    """`manifests`: {reached node: its ModelManifest of the model's cache directory}."""
    partial = [name for name in order if (manifests.get(name) or {}).get("incomplete")]
    return _staging_problems(
        f"model {model}", manifests, order,
        holds=model_whole, describe=describe_holding,
        explicit=explicit, copied=copied,
        fix=lambda on, copies: model_fix(model, user, hf_home, on, copies, partial),
        where=f"whole in {user}'s Hugging Face cache ({hf_home}/hub)", setting="distribute_model")


def sources_line(item: str, holdings: Mapping[str, Any], order: Sequence[str], holds: Callable[[Any], bool],
                 explicit: str | None = None) -> str | None:
    """One log line: where `item` comes from and which nodes receive it; None when nobody holds it."""
    held = {name: value for name, value in holdings.items() if holds(value)}
    source = choose_source(held, order, explicit)
    if source is None or source not in held:
        return None
    receivers = [name for name in order if name in holdings and held.get(name) != held[source]]
    tail = (f"; {', '.join(receivers)} {'receives' if len(receivers) == 1 else 'receive'} it over QSFP"
            if receivers else "; every node holds it already")
    return f"preflight: {item} is copied from {source}{tail}"
