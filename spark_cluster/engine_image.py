"""The engine image every role means, and where it comes from in this run.

preflight compares it across nodes, standin builds it in the lab, distribute
copies it from the node that has it, serving runs it: all four ask here, so they name
the same image and agree on which node receives it.

In the lab (serving_standin) the image is the stand-in engine that roles/standin
ships and builds: its tag hashes every file that goes into it, so a changed
stand-in gets a new tag, a new unit, and a restart.
"""

from __future__ import annotations

import hashlib
import shlex
from pathlib import Path
from typing import Any

from pyinfra import host
from pyinfra.api import FactBase

from .batch_fact import Want, want
from .cluster_facts import member_connected, member_fact
from .copy_source import choose_source
from .engines import default_image
from .settings import cluster_settings, require

# The stand-in's files are data shipped with the standin role; the tag that
# names them is computed here because preflight, which runs before standin,
# must know it too. A path, not an import: spark_cluster imports no role.
STANDIN_FILES = Path(__file__).resolve().parents[1] / "roles" / "standin" / "files"
STANDIN_SOURCE = STANDIN_FILES / "standin"
STANDIN_BUILDER_SOURCE = STANDIN_FILES / "build_standin.py"
STANDIN_REPOSITORY = "spark-standin"
# The image id of a lab stand-in that its source builds later in this run.
BUILT_THIS_RUN = "built on the source in this run"


def standin_sources() -> list[Path]:
    return sorted(path for path in STANDIN_SOURCE.iterdir() if path.is_file() and path.suffix == ".py")


def standin_tag() -> str:
    digest = hashlib.sha256()
    for path in [*standin_sources(), STANDIN_BUILDER_SOURCE]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return f"{STANDIN_REPOSITORY}:{digest.hexdigest()[:12]}"


def effective_image(serving_image: str | None, serving_standin: bool) -> str | None:
    """The image the unit runs: the stand-in's tag in the lab, else group_data's."""
    return standin_tag() if serving_standin else serving_image


def image_of(host_data: Any) -> str | None:
    """effective_image from a host's settings: group_data's image, else the engine's default."""
    s = cluster_settings(host_data)
    return effective_image(s.serving_image or default_image(s.serving_engine), s.serving_standin)


class DockerImageId(FactBase):
    """The local image's id (sha256:...), or None when it is not on the node."""

    def command(self, image: str) -> str:
        return f"docker image inspect --format '{{{{.Id}}}}' {shlex.quote(image)} 2>/dev/null || true"

    def process(self, output):
        lines = [line.strip() for line in output if line.strip()]
        return lines[0] if lines else None


def image_id_of(image: str) -> Want:
    """Whether (and which) image `image` is on a node: standin, distribute and serving read it."""
    return want(DockerImageId, image=image)


def needs_copy(source_value, own_value) -> bool:
    """Copy only what the source has and this node lacks or holds differently
    (an image id here; distribute decides model copies the same way)."""
    return source_value is not None and own_value != source_value


def explicit_source(host_data: Any) -> str | None:
    """distribute_source, checked to name a node of this inventory; None: each item's
    source is chosen from what the nodes hold (spark_cluster/copy_source.py)."""
    name = cluster_settings(host_data).distribute_source
    if name is not None:
        names = [member["name"] for member in host_data.get("cluster_members")]
        require(name in names, "distribute_source", f"{name!r} is not a node of this inventory")
    return name


def member_named(host_data: Any, name: str) -> dict:
    """The cluster member ({name, qsfp_ip, rank}) called `name`."""
    return next(member for member in host_data.get("cluster_members") if member["name"] == name)


def member_order(host_data: Any) -> list[str]:
    """The nodes in inventory order, the head first: the order sources are chosen in."""
    return [member["name"] for member in host_data.get("cluster_members")]


def image_source(host_data: Any) -> dict | None:
    """The member the engine image is copied from, or None when no node holds it.

    distribute_source when set, else the first node (head first) that has the
    image. In the lab nobody has a new stand-in yet: the first node this run
    reaches builds it (roles/standin) and is the source.
    """
    image = image_of(host_data)
    order = member_order(host_data)
    # One cluster-wide read per run: standin, distribute and serving all ask.
    name = choose_source(member_fact(image_id_of(image)), order, explicit_source(host_data))
    if name is None and cluster_settings(host_data).serving_standin:
        name = next((member for member in order if member_connected(member)), None)
    return None if name is None else member_named(host_data, name)


def image_to_receive(host_data: Any) -> tuple[str, str] | None:
    """(image, source image id) when this node must load the image from the source, else None.

    In the lab a source without the stand-in builds it earlier in this run
    (roles/standin): its id is then BUILT_THIS_RUN, and every other node
    loads that very image instead of building one with a different id.
    """
    s = cluster_settings(host_data)
    if not s.distribute_image:
        return None
    image = image_of(host_data)
    if not image:
        return None
    source = image_source(host_data)
    if source is None or source["name"] == host.name:
        return None
    image_ids = member_fact(image_id_of(image))
    source_id = image_ids.get(source["name"])
    if source_id is None and s.serving_standin and member_connected(source["name"]):
        source_id = BUILT_THIS_RUN
    if not needs_copy(source_id, image_ids.get(host.name)):
        return None
    return image, source_id


def image_identity(host_data: Any) -> str | None:
    """What the serving unit records of the image it runs, or None when the
    image will not be on this node in this run.

    A real image is its name and id (the node's, or the source's when it
    arrives in this run), so a different image loaded under the same tag
    restarts the engine. The stand-in is built or received earlier in this
    run (roles/standin, roles/distribute), and its tag hashes its content:
    the tag is its identity.
    """
    image = image_of(host_data)
    if cluster_settings(host_data).serving_standin:
        return image
    image_id = member_fact(image_id_of(image)).get(host.name)
    if image_id is None:
        arriving = image_to_receive(host_data)
        image_id = arriving[1] if arriving else None
    return None if image_id is None else f"{image} {image_id}"
