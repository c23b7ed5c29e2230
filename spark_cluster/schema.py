"""Every cluster-wide setting, declared once: its type, default, allowed values
and one line of documentation (pure: no pyinfra).

group_data/all.py, an inventory's cluster-wide values and `--data` overrides
are all read through this table (spark_cluster.settings): a key it does not
declare is refused with the closest valid name, a value of the wrong type or
outside its range with the key and the fix. `docs/settings.md` is generated
from it (`python -m spark_cluster.schema > docs/settings.md`; a unit test
holds the file to the table).

Why a table of dataclasses and not pydantic: the settings are flat values
(scalars, a few lists and the profile dict) whose checks are a type, a
choice or a range; every message must be one line naming the key, the
value and the fix, as the inventory's are; and the controller needs no
dependency beyond pyinfra. A rule that spans keys (engine vs image, distinct
ports) is a function here too; what needs the inventory's nodes (subnets vs
addresses) stays in spark_cluster.fabric and spark_cluster.inventory.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from .engines import ENGINES, default_image
from .copy_plan import DEFAULT_MODEL_EXCLUDE, DEFAULT_MODEL_FILES, FANOUTS

_NUMBER = (int, float)


@dataclass(frozen=True)
class Setting:
    key: str
    concern: str  # the role (or suite) that reads it; the docs group by it
    default: Any
    doc: str
    kind: type | tuple[type, ...] = str
    # The allowed values; a callable when a registry holds them (serving_engine).
    choices: tuple | Callable[[], tuple] = ()
    minimum: float | None = None
    maximum: float | None = None
    nullable: bool = False  # None is a value of its own (see `doc`)
    item: type | None = None  # the type of a list's items
    pattern: str | None = None  # a str must match it whole

    @property
    def options(self) -> tuple:
        return self.choices() if callable(self.choices) else self.choices

    def problem(self, value: Any) -> str | None:
        """Why `value` is not a value of this setting, as the second half of a
        one-line message; None when it is."""
        options = self.options
        if value is None and self.nullable:
            return None
        if value in options and type(value) is type(options[0]):
            return None
        if not _is(value, self.kind):
            return f"must be {self.expected()}, got {value!r}"
        if options and not _is(value, _types(self.kind) - {type(options[0])}):
            return f"must be {self.expected()}, got {value!r}"
        if isinstance(value, _NUMBER) and not isinstance(value, bool):
            if self.minimum is not None and value < self.minimum or self.maximum is not None and value > self.maximum:
                return f"must be {self.expected()}, got {value!r}"
        if isinstance(value, str) and self.pattern and not re.fullmatch(self.pattern, value):
            return f"must be {self.expected()}, got {value!r}"
        if isinstance(value, list) and self.item and not all(_is(v, self.item) for v in value):
            return f"must be {self.expected()}, got {value!r}"
        return None

    def expected(self) -> str:
        """What the setting takes, in words (messages and the generated docs)."""
        parts, options = [], self.options
        if len(options) == 1:
            parts.append(repr(options[0]))
        elif options:
            parts.append("one of " + ", ".join(repr(c) for c in options))
        rest = _types(self.kind) - ({type(options[0])} if options else set())
        if rest:
            words = _kind_words(rest, self.item)
            if self.minimum is not None and self.maximum is not None:
                words += f" from {_num(self.minimum)} to {_num(self.maximum)}"
            elif self.minimum is not None:
                words += f" of at least {_num(self.minimum)}"
            parts.append(words)
        if self.nullable:
            parts.append("None")
        return " or ".join(parts)


def _types(kind) -> set[type]:
    return set(kind) if isinstance(kind, (tuple, set, frozenset)) else {kind}


def _is(value: Any, kind) -> bool:
    # bool is an int to Python; True is no port and no timeout.
    types = _types(kind)
    if isinstance(value, bool):
        return bool in types
    if float in types and isinstance(value, int):
        return True
    return isinstance(value, tuple(types))


def _kind_words(types: set[type], item: type | None) -> str:
    names = {bool: "True or False", int: "an integer", float: "a number", str: "a string",
             dict: "a dict", list: f"a list of {_kind_words({item}, None).split(' ', 1)[1]}s" if item else "a list"}
    if types == {int, float}:
        return "a number"
    return " or ".join(names[t] for t in sorted(types, key=lambda t: t.__name__))


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


_PORT = dict(kind=int, minimum=1, maximum=65535)
_SECONDS = dict(kind=int, minimum=1)

SETTINGS: tuple[Setting, ...] = (
    # --- the cluster -------------------------------------------------------
    Setting("cluster_name", "ssh", "spark",
            "Names the controller's key directory (~/.ssh/spark-cluster/NAME): one key pair per cluster.",
            pattern=r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"),
    # --- the QSFP fabric (roles/network, spark_cluster/fabric.py) ----------
    Setting("network_mode", "network", "dual_subnet",
            "dual_subnet: one subnet per PCIe half, NCCL gets every rail (full bandwidth); bond: bond0 over the rails.",
            choices=("dual_subnet", "bond")),
    Setting("qsfp_ports", "network", [1],
            "The cabled QSFP port(s): [1] is one cable in port 1; [0, 1] both ports (four rails).",
            kind=list, item=int),
    Setting("qsfp_subnets", "network",
            ["192.168.100.0/24", "192.168.101.0/24", "192.168.102.0/24", "192.168.103.0/24"],
            "One subnet per rail, in rail order; each node's qsfp_address lies in the first, its host number carries over.",
            kind=list, item=str),
    Setting("bond_name", "network", "bond0", "bond mode: the bond's netdev name.",
            pattern=r"[A-Za-z0-9_.-]{1,15}"),
    Setting("bond_mode", "network", "balance-xor", "bond mode: the Linux bonding mode.",
            choices=("balance-rr", "active-backup", "balance-xor", "broadcast", "802.3ad", "balance-tlb",
                     "balance-alb")),
    Setting("bond_transmit_hash_policy", "network", "layer3+4",
            "bond mode: how hashing modes spread flows over the halves.",
            choices=("layer2", "layer3+4", "layer2+3", "encap2+3", "encap3+4")),
    Setting("mtu", "network", 9000, "MTU of every rail (and the bond).", kind=int, minimum=1280, maximum=9216),
    Setting("qsfp_carrier_required", "network", "all",
            "all: every rail needs a carrier; any: only a node with no QSFP link at all is stopped.",
            choices=("all", "any")),
    Setting("qsfp_up_timeout_s", "network", 60,
            "First run: seconds the links and the peers get to come up after netplan applies.", **_SECONDS),
    Setting("qsfp_takeover", "network", False,
            "True: other configurations of the QSFP ports (40-cx7.yaml, NM profiles) are moved aside, not refused.",
            kind=bool),
    # --- RoCE (roles/rdma) -------------------------------------------------
    Setting("nccl_ib_hca", "rdma", "auto",
            "auto: detected from sysfs at every serving start; or pinned RDMA device names ('rocep1s0f1,...').",
            kind=(str, list), item=str),
    Setting("nccl_ib_gid_index", "rdma", "auto",
            "auto: the RoCE v2 IPv4 GID's index from sysfs (3 on a CX-7); or a pinned index.",
            kind=(str, int), choices=("auto",), minimum=0, maximum=255),
    Setting("roce_gid_wait_s", "rdma", 10,
            "Seconds the detector waits for the RoCE v2 IPv4 GID after a link got its address.", kind=int, minimum=0),
    Setting("rdma_packages", "rdma", ["rdma-core", "ibverbs-utils", "perftest"],
            "Packages installed for RDMA (perftest: the verify suite's ib_write_bw).", kind=list, item=str),
    # --- preflight ---------------------------------------------------------
    Setting("model_disk_gib", "preflight", 200,
            "Free GiB the model cache needs on the admin's home filesystem (weights: 149-168 GB).",
            kind=(int, float), minimum=0),
    Setting("preflight_strict", "preflight", True,
            "False: nodes that disagree (kernel, driver, image) only warn; a node's own faults still stop it.",
            kind=bool),
    # --- gpu ---------------------------------------------------------------
    Setting("drm_override_file", "gpu", "/etc/modprobe.d/zz-nvidia-drm-override.conf",
            "The DRM override DGX OS ships (CUDA then sees ~62 of 128 GB); removed, with one reboot.",
            pattern=r"/[^\s]+"),
    Setting("reboot_timeout_s", "gpu", 900, "Seconds a node gets to come back from its one reboot.", **_SECONDS),
    # --- caches ------------------------------------------------------------
    Setting("cache_dir_mode", "caches", "755", "Mode of the cache directories under the admin's home.",
            pattern=r"[0-7]{3,4}"),
    # --- distribute --------------------------------------------------------
    Setting("distribute_model", "distribute", True,
            "Copy the model from a node that holds it whole to nodes that lack it, over QSFP.", kind=bool),
    Setting("distribute_image", "distribute", True,
            "Copy the engine image from a node that has it to nodes whose image differs (preflight then only logs it).",
            kind=bool),
    Setting("distribute_caches", "distribute", True,
            "Give a node whose engine compile caches are empty the source's, when both run the same image id "
            "(a non-empty cache is never overwritten).", kind=bool),
    Setting("distribute_source", "distribute", None,
            "The node model, image and caches are copied from; None: per item, the first node (head first) that holds it.",
            nullable=True),
    Setting("distribute_fanout", "distribute", "chain",
            "chain: each receiver pulls from the one before it while that one still receives (the source sends "
            "once); star: every receiver pulls from the source.", choices=FANOUTS),
    Setting("distribute_streams_per_rail", "distribute", 4,
            "Model copy: rsync streams per rail of the upstream, each on its own SSH connection (one core per "
            "stream at each end).", kind=int, minimum=1, maximum=16),
    Setting("distribute_model_files", "distribute", list(DEFAULT_MODEL_FILES),
            "Model copy: globs of the snapshot files the engine reads (a glob with '/' matches the path inside "
            "the snapshot, else the file name); their blobs and refs/ travel with them.", kind=list, item=str),
    Setting("distribute_model_exclude", "distribute", list(DEFAULT_MODEL_EXCLUDE),
            "Model copy: globs left behind even when distribute_model_files names them (duplicate format "
            "folders no engine here reads).", kind=list, item=str),
    Setting("distribute_stall_s", "distribute", 120,
            "Chain: seconds a receiver waits on an upstream that makes no progress before pulling the rest from "
            "the source.", kind=int, minimum=10),
    # --- the lab's stand-in engine -----------------------------------------
    Setting("serving_standin", "standin", False,
            "Lab only: run the stand-in engine (no GPU, no weights) instead of serving_image.", kind=bool),
    # --- serving -----------------------------------------------------------
    Setting("serving_engine", "serving", "vllm", "The inference engine (spark_cluster/engines.py).",
            choices=lambda: tuple(ENGINES)),
    Setting("serving_image", "serving", None,
            "The engine image; None: the engine's default image (see the table below).", nullable=True),
    Setting("serving_image_entrypoint_is_engine", "serving", None,
            "True when the image's ENTRYPOINT already starts the engine; None: known for the default images.",
            kind=bool, nullable=True),
    Setting("serving_model", "serving", None, "The Hugging Face model id served (and distributed).", nullable=True),
    Setting("serving_served_model_name", "serving", None,
            "The model name the API answers to; None: the engine's own choice.", nullable=True),
    Setting("serving_profile", "serving", None, "The entry of serving_profiles to run.", nullable=True),
    Setting("serving_profiles", "serving", {},
            "{profile: {engine: {flag: value}, 'env': {VAR: value}}}: engine flags per model.", kind=dict),
    Setting("api_port", "serving", 8000, "The head's OpenAI API port.", **_PORT),
    Setting("master_port", "serving", 29519, "The engine's rendezvous port on the head.", **_PORT),
    Setting("serving_start_timeout_s", "serving", 1800,
            "How long an engine may take to answer its first completion (the deploy's wait, the unit, the watcher).",
            **_SECONDS),
    Setting("serving_stop_timeout_s", "serving", 60, "Seconds docker gives the engine to exit before SIGKILL.",
            **_SECONDS),
    Setting("serving_wait_ready", "serving", True,
            "After a run that (re)started an engine, wait until the head answers a chat completion.", kind=bool),
    Setting("api_listen", "serving", "qsfp",
            "qsfp: the head's API listens on its QSFP address only; all: every address (set an API key).",
            choices=("qsfp", "all")),
    Setting("serving_api_key_file", "serving", None,
            "A 0600 file on the controller holding the API key; it lands in serving.env (0600) only.", nullable=True),
    Setting("serving_memory_check", "serving", None,
            "Share of memory that must be free before an engine starts; None: the profile's claim; 0: report only.",
            kind=float, minimum=0, maximum=1, nullable=True),
    Setting("serving_watch_interval_s", "watch", 10, "Seconds between the watcher's looks.", **_SECONDS),
    Setting("serving_watch_probe_timeout_s", "watch", 30, "A one-token completion slower than this fails.",
            **_SECONDS),
    Setting("serving_watch_fail_after", "watch", 3,
            "Failed probes in a row, after the head answered once, that restart it.", **_SECONDS),
    Setting("serving_watch_rejoin_grace_s", "watch", 30,
            "A head restarted this long after a worker's engine: the worker restarts to rejoin.", kind=int,
            minimum=0),
    Setting("serving_watch_backoff_s", "watch", 60, "First wait between restarts; doubled per restart in the hour.",
            **_SECONDS),
    Setting("serving_watch_backoff_max_s", "watch", 900, "The longest wait between restarts.", **_SECONDS),
    Setting("serving_watch_max_restarts_per_hour", "watch", 6, "Then the watcher holds and says so.", **_SECONDS),
    Setting("serving_watch_port", "watch", 29520, "Each watcher's /state, on its QSFP control address.", **_PORT),
    # --- uninstall.py ------------------------------------------------------
    Setting("uninstall_remove_model", "uninstall", False,
            "True: the uninstall also deletes serving_model from the admin's Hugging Face cache on every node.",
            kind=bool),
    Setting("uninstall_remove_images", "uninstall", False,
            "True: the uninstall also removes the engine image (serving_image, or the lab's stand-in) from every node.",
            kind=bool),
    # --- the verify suite (tests/verify) -----------------------------------
    Setting("min_gpu_memory_gib", "verify", 100,
            "GiB CUDA must see (a GB10: ~119.7 without the DRM override, ~62 with it).", kind=(int, float),
            minimum=0),
    Setting("rdma_min_link_fraction", "verify", 0.5,
            "Each rail's ib_write_bw must reach this share of its link rate; 0 reports without judging.",
            kind=float, minimum=0, maximum=1),
    Setting("gpu_expected", "verify", True,
            "False only for GPU-less machines (the lab): verify then skips the GPU memory check.", kind=bool),
)

BY_KEY: dict[str, Setting] = {setting.key: setting for setting in SETTINGS}
DEFAULTS: dict[str, Any] = {setting.key: setting.default for setting in SETTINGS}
PORT_SETTINGS = ("api_port", "master_port", "serving_watch_port")


def closest(key: str, known: Iterable[str]) -> str | None:
    """The valid name a typo most likely meant, if any is close."""
    matches = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return matches[0] if matches else None


def unknown_key_message(key: str, known: Iterable[str]) -> str:
    guess = closest(key, known)
    hint = f"did you mean {guess}?" if guess else "see docs/settings.md for every setting"
    return f"unknown setting {key!r}: {hint}"


def value_problems(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    """[(key, message)] for every declared key whose value (None: the default)
    is wrong, then every rule that spans keys; `values` holds declared keys only."""
    problems = []
    for setting in SETTINGS:
        value = values.get(setting.key)
        if value is None and not setting.nullable:
            continue
        problem = setting.problem(value)
        if problem:
            problems.append((setting.key, f"'{setting.key}' {problem}"))
    if problems:
        return problems  # cross-field rules assume well-typed values
    merged = {**DEFAULTS, **{k: v for k, v in values.items() if v is not None}}
    for rule in CROSS_FIELD_RULES:
        problem = rule(merged)
        if problem:
            problems.append(problem)
    return problems


def _ports_distinct(s: Mapping[str, Any]) -> tuple[str, str] | None:
    seen: dict[int, str] = {}
    for key in PORT_SETTINGS:
        if s[key] in seen:
            return key, (f"'{key}' {s[key]} is also '{seen[s[key]]}': the head serves both on one address; "
                         "give each of api_port, master_port and serving_watch_port its own port")
        seen[s[key]] = key
    return None


def image_engine(image: str) -> str | None:
    """The engine an image's repository name says it carries (vllm-ds4-sm121 ->
    vllm), or None when it names none or several."""
    name = image.split("@", 1)[0].rsplit("/", 1)[-1].split(":", 1)[0].lower()
    named = [engine for engine in ENGINES if engine in name]
    return named[0] if len(named) == 1 else None


def _engine_matches_image(s: Mapping[str, Any]) -> tuple[str, str] | None:
    engine, image = s["serving_engine"], s["serving_image"]
    if s["serving_standin"] or image is None:
        return None
    carried = image_engine(image)
    if carried and carried != engine:
        label, default = ENGINES[engine].label, default_image(engine)
        return "serving_image", (
            f"'serving_image' {image!r} is a {ENGINES[carried].label} image but 'serving_engine' is {engine!r}: "
            f"set serving_image to a {label} image (or None for {default}) and serving_image_entrypoint_is_engine "
            "to match it"
        )
    return None


def _entrypoint_names_an_image(s: Mapping[str, Any]) -> tuple[str, str] | None:
    # The flag describes an image: set for the engine's default image it
    # overrides what is known of that image, which is a copy left behind.
    if s["serving_image"] is None and s["serving_image_entrypoint_is_engine"] is not None and not s["serving_standin"]:
        engine = s["serving_engine"]
        return "serving_image_entrypoint_is_engine", (
            f"'serving_image_entrypoint_is_engine' is {s['serving_image_entrypoint_is_engine']!r} but serving_image "
            f"is None ({ENGINES[engine].label}'s default {default_image(engine)}, whose entrypoint is known): "
            "set serving_image to the image it describes, or remove serving_image_entrypoint_is_engine"
        )
    return None


def _backoff_ordered(s: Mapping[str, Any]) -> tuple[str, str] | None:
    if s["serving_watch_backoff_max_s"] < s["serving_watch_backoff_s"]:
        return "serving_watch_backoff_max_s", (
            f"'serving_watch_backoff_max_s' {s['serving_watch_backoff_max_s']} is below serving_watch_backoff_s "
            f"{s['serving_watch_backoff_s']}: raise it, or lower serving_watch_backoff_s")
    return None


CROSS_FIELD_RULES: tuple[Callable[[Mapping[str, Any]], tuple[str, str] | None], ...] = (
    _ports_distinct, _engine_matches_image, _entrypoint_names_an_image, _backoff_ordered,
)


def _doc_value(value: Any) -> str:
    return "`None`" if value is None else f"`{value!r}`"


def settings_doc() -> str:
    """docs/settings.md: every setting by concern, generated from SETTINGS."""
    lines = [
        "# Settings",
        "",
        "Generated from `spark_cluster/schema.py` (`python -m spark_cluster.schema > docs/settings.md`);",
        "a unit test fails when this file and the table differ. Set them in `group_data/all.py`",
        "(or `--data key=value`); any other key is refused, with the closest valid name.",
        "Per-node fields (`name`, `ssh_hostname`, `ssh_user`, `qsfp_address`, ...) live in the",
        "inventory and are checked by `spark_cluster/inventory.py`.",
        "",
    ]
    concern = None
    for setting in SETTINGS:
        if setting.concern != concern:
            concern = setting.concern
            lines += ["", f"## {concern}", "", "| setting | takes | default | what |", "|---|---|---|---|"]
        lines.append(f"| `{setting.key}` | {setting.expected()} | {_doc_value(setting.default)} | {setting.doc} |")
    lines += ["", "## Engine defaults", "", "| serving_engine | default serving_image | its entrypoint starts the engine |",
              "|---|---|---|"]
    for engine in ENGINES.values():
        lines.append(f"| `{engine.name}` | `{engine.default_image}` | {engine.default_image_entrypoint_is_engine} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(settings_doc(), end="")
