"""Which node each copied item (the model, the engine image) comes from (pure).

The deploy copies the model and the engine image node to node over QSFP.
Each item has its own source: the node named by distribute_source when
group_data sets one, else the first node in inventory order (the head first)
that holds the item (the model whole, the image at all). So a rebuilt head
receives both from a worker, and the model may be staged on one node and the
image on another. With no holder there is no source: preflight says how to
stage the item (roles/preflight/staging.py, with the fixes below).
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


def pullable(image: str) -> bool:
    """Whether `image` names a registry repository (nvcr.io/nvidia/vllm:..., lmsysorg/sglang:...).
    A bare name such as vllm-ds4-sm121:latest would mean Docker Hub's official
    library, which holds no engine image: it is a local build."""
    return "/" in image.split("@", 1)[0]


COPIED = "; the deploy copies it to the other nodes over QSFP"


def image_fix(image: str, user: str, on: str = "one node", copied: bool = True) -> str:
    """How to put `image` on a node: pull it, or load or build a local build."""
    tail = COPIED if copied else ""
    if pullable(image):
        return f"pull it on {on}: `docker pull {image}` (as {user}, in the docker group, or with sudo){tail}"
    return (f"{image} is a local build that no registry holds: load it on {on} from the machine that has it "
            f"(`docker save {image} | ssh {user}@NODE docker load`, or `docker load -i FILE.tar` there) "
            f"or build it there (`docker build -t {image} .`){tail}")


def model_fix(model: str, user: str, hf_home: str, on: str = "one node", copied: bool = True,
              partial: Sequence[str] = ()) -> str:
    """How to put `model` into the admin's Hugging Face cache, where the engine container finds it."""
    command = f"hf download {model}"
    tail = COPIED if copied else ""
    if partial:
        return f"finish the download: run `{command}` again as {user} on {', '.join(partial)} (it resumes){tail}"
    return (f"download it on {on} as {user}, not with sudo and not with --local-dir, HF_HOME unset: "
            f"`{command}` (huggingface_hub's CLI; older releases: `huggingface-cli download {model}`) puts it in "
            f"{hf_home}/hub, the cache the engine container mounts{tail}")
