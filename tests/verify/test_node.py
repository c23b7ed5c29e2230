"""Per-node checks: each reads the node's live state and names the fix."""

from __future__ import annotations

import json
import shlex

import pytest
from sparkverify.expect import (
    CLUSTER_KEY,
    CONTAINER,
    ENGINE_CACHES,
    INTERFACE_VARIABLES,
    KNOWN_HOSTS,
    LIMITS_FILE,
    REDEPLOY,
    ROCE_ENV,
    SERVING_ENV,
    SERVING_UNIT,
    WATCH_UNIT,
    Problems,
    hf_cache_dir,
    host_cache_dirs,
)
from sparkverify.parse import (
    gid_ipv4,
    ipv4_mapped_gid,
    known_host_keys,
    limits_conf_memlock_unlimited,
    parse_docker_mounts,
    parse_env_file,
    parse_gpu_total_mib,
    parse_hca_list,
    parse_ip_addr_json,
    parse_mountinfo,
    parse_nmcli_devices,
    parse_pubkey,
    parse_rlimit,
    parse_unit_file,
    proc_limit,
    revoked_keys,
    rlimit_unlimited,
    roce_v2_index,
)
from sparkverify.rails import gid_table, hca_ports, network_setting, node_fabric, port_dir, rail_ip

CONTAINER_DOWN_FIX = f"the container is not running: see check 'serving_unit' (`journalctl -u {SERVING_UNIT}`)"
# What CUDA itself reports (cuDeviceTotalMem), the number the DRM override halves.
CUDA_TOTAL_MEMORY = (
    "import ctypes;c=ctypes.CDLL('libcuda.so.1');d=ctypes.c_int();m=ctypes.c_size_t();"
    "assert c.cuInit(0)==0,'cuInit failed';assert c.cuDeviceGet(ctypes.byref(d),0)==0,'no CUDA device';"
    "assert c.cuDeviceTotalMem_v2(ctypes.byref(m),d)==0,'cuDeviceTotalMem failed';print(m.value)"
)


def is_vllm(node) -> bool:
    return node.spec.settings.serving_engine == "vllm"


def roce_env(node) -> dict[str, str] | None:
    text = node.read_root_file(ROCE_ENV)
    return None if text is None else parse_env_file(text)


def container_mounts(node, problems: Problems):
    """(docker's mount list, the running container's own mount table) or (None, None)."""
    inspect = node.run_root(f"docker inspect -f '{{{{json .Mounts}}}}' {CONTAINER}")
    # python3, as every container check: an engine image need not ship coreutils.
    mountinfo = node.container_python("print(open('/proc/self/mountinfo').read(), end='')")
    if not inspect.ok or not mountinfo.ok:
        problems.add(f"container {CONTAINER}", "running", (inspect if not inspect.ok else mountinfo).brief,
                     CONTAINER_DOWN_FIX)
        return None, None
    return parse_docker_mounts(inspect.stdout), parse_mountinfo(mountinfo.stdout)


def test_links(node):
    """Every netdev that carries an address of ours has it, is up, at the MTU;
    a bond (where the fabric has one) also has its mode, its rails as slaves,
    and carrier as qsfp_carrier_required asks."""
    fab, mtu = node_fabric(node.spec), int(network_setting(node.spec, "mtu"))
    problems = Problems(node.name)
    netplan = f"{REDEPLOY} (roles/network writes the rails' netplan file)"
    for link in fab.links:
        state = None
        # Asked again once when the JSON does not parse: iproute2 was seen
        # printing a broken document once while the bond was being re-enslaved.
        for _ in range(2):
            shown = node.run(f"ip -j addr show dev {shlex.quote(link.netdev)}")
            if not shown.ok:
                break
            try:
                state = parse_ip_addr_json(shown.stdout)
                break
            except ValueError:
                continue
        if not shown.ok:
            problems.add(link.netdev, "present", shown.brief, netplan)
            continue
        if state is None:
            problems.add(f"{link.netdev} (ip -j addr)", "a JSON document", shown.stdout.strip()[:200],
                         "run `ip -j addr show dev " + link.netdev + "` on the node and report it")
            continue
        if not state.up:
            problems.add(f"{link.netdev} state", "UP,LOWER_UP", f"operstate {state.operstate}, flags {','.join(state.flags)}",
                         "check the QSFP cable and the peer's port (`ip link`, `ethtool`); then `sudo netplan apply`")
        addresses = [f"{ip}/{prefix}" for ip, prefix in state.ipv4]
        if link.address not in addresses:
            problems.add(f"{link.netdev} IPv4", link.address, addresses or "no address",
                         f"`sudo netplan apply` or {REDEPLOY} (an address flushed by hand is not restored until then)")
        if state.mtu != mtu:
            problems.add(f"{link.netdev} MTU", mtu, state.mtu, f"{REDEPLOY}; every device on the path needs MTU {mtu}")
    if fab.bond_name:
        bond_problems(node, fab, mtu, problems)
    problems.check()


def bond_problems(node, fab, mtu: int, problems: Problems) -> None:
    bond = fab.bond_name
    slaves_read = node.run(f"cat /sys/class/net/{bond}/bonding/slaves")
    slaves = slaves_read.stdout.split() if slaves_read.ok else []
    if sorted(slaves) != sorted(fab.netdevs):
        problems.add(f"{bond} slaves", " ".join(fab.netdevs), " ".join(slaves) or "none",
                     "check qsfp_ports in group_data against the cabled port (`ip link`), then re-deploy")
    for rail in fab.netdevs:
        rail_mtu = node.run(f"cat /sys/class/net/{rail}/mtu").stdout.strip()
        if rail_mtu != str(mtu):
            problems.add(f"{rail} MTU", mtu, rail_mtu or "unreadable", f"{REDEPLOY}; a slave below {mtu} drops jumbo frames")
    # sysfs prints the mode's name and number, e.g. "balance-xor 2".
    mode_read = node.run(f"cat /sys/class/net/{bond}/bonding/mode")
    mode = (mode_read.stdout.split() or [""])[0] if mode_read.ok else ""
    want_mode = network_setting(node.spec, "bond_mode")
    if mode != want_mode:
        problems.add(f"{bond} mode", want_mode, mode or f"unreadable ({mode_read.brief})",
                     f"{REDEPLOY} (roles/network deletes and recreates a bond whose mode differs: networkd cannot change "
                     "the mode of an existing bond)")
    carrier_problems(node, problems, fab.netdevs)


def carrier_problems(node, problems: Problems, ports: list[str]) -> None:
    """qsfp_carrier_required: "all" needs a carrier on every rail of the bond,
    "any" (one half with link is a supported bond) on at least one."""
    required = network_setting(node.spec, "qsfp_carrier_required")
    carriers = {}
    for port in ports:
        # sysfs refuses to read the carrier of an interface that is down.
        read = node.run(f"cat /sys/class/net/{port}/carrier")
        carriers[port] = read.stdout.strip() if read.ok else f"unreadable ({read.brief})"
    found = ", ".join(f"{port} {value}" for port, value in carriers.items()) or "no rails"
    cable_fix = "check the QSFP cable and the peer's ports (`ip link`, `ethtool PORT`)"
    if required == "all":
        for port, value in carriers.items():
            if value != "1":
                problems.add(f"{port} carrier", "1 (qsfp_carrier_required = all)", value, cable_fix)
    elif not any(value == "1" for value in carriers.values()):
        problems.add("QSFP carrier", "1 on at least one rail (qsfp_carrier_required = any)", found, cable_fix)


def test_network_manager(node, record_property):
    """NetworkManager (DGX OS runs it) leaves every rail, and the bond, alone:
    netplan's per-device `renderer: networkd` marks them unmanaged. A node
    without NetworkManager passes, and the report says so."""
    fab = node_fabric(node.spec)
    problems = Problems(node.name)
    ours = list(dict.fromkeys([*fab.netdevs, *(link.netdev for link in fab.links)]))
    if not node.run("command -v nmcli").ok:
        record_property("detail", "nmcli not installed: no NetworkManager to take the rails")
        return
    shown = node.run("nmcli -t -f DEVICE,STATE device")
    if not shown.ok:
        if "not running" in shown.stdout + shown.stderr:
            record_property("detail", "NetworkManager is not running: it manages no device")
            return
        problems.add("`nmcli device`", "NetworkManager's device list", shown.brief,
                     "check `systemctl status NetworkManager`")
        problems.check()
    states = parse_nmcli_devices(shown.stdout)
    for netdev in ours:
        state = states.get(netdev)
        if state is not None and state != "unmanaged":
            problems.add(f"NetworkManager on {netdev}", "unmanaged", state,
                         f"netplan's `renderer: networkd` on {netdev} tells NetworkManager to leave it alone: "
                         f"`sudo netplan apply` or {REDEPLOY}; a NetworkManager profile for the port "
                         "(`nmcli connection show`) is named by the deploy and moved aside with qsfp_takeover = True")
    problems.check()
    unlisted = [netdev for netdev in ours if netdev not in states]
    record_property("detail", f"NetworkManager leaves {', '.join(n for n in ours if n in states) or 'nothing of ours'} "
                    "unmanaged" + (f"; does not list {', '.join(unlisted)}" if unlisted else ""))


def test_roce_gid(node):
    """roce.env names every rail's RDMA device; each device's port is ACTIVE and
    holds the RoCE v2 GID of its rail's address (of the control address where a
    bond holds the one address) at NCCL_IB_GID_INDEX, or at some index when the
    rails disagree and roce.env leaves the pick to NCCL."""
    fab = node_fabric(node.spec)
    problems = Problems(node.name)
    env = roce_env(node)
    if env is None:
        problems.add(ROCE_ENV, "present (written at each serving start)", "missing",
                     f"`sudo systemctl restart {SERVING_UNIT}` and read its journal (roce_detect.py)")
        problems.check()
    listed = hca_ports(env.get("NCCL_IB_HCA", ""))
    gid_index = env.get("NCCL_IB_GID_INDEX", "")
    if not listed or (gid_index and not gid_index.isdigit()):
        problems.add(ROCE_ENV, "NCCL_IB_HCA=<device>[,<device>...] and NCCL_IB_GID_INDEX=<n> (or none)",
                     f"NCCL_IB_HCA={env.get('NCCL_IB_HCA')!r} NCCL_IB_GID_INDEX={gid_index!r}",
                     "no RoCE device detected: check `rdma link` / `ibdev2netdev`, then restart spark-serving")
        problems.check()
    rails = list(fab.rails)
    if fab.bond_name:
        # The bond's device(s): those holding the bond's RoCE v2 GID (every
        # rail's mlx5 device under a bond on a CX-7; in the lab the one
        # soft-RoCE device moved onto the bond, the other receives nothing).
        rails = [rail for rail in fab.rails
                 if roce_v2_index(gid_table(node, rail.rdma_device, 1), fab.control_ip) is not None]
        # A soft-RoCE device moved onto the bond itself is the only one that
        # receives; the one left on a slave shows the GID but hears nothing
        # (the detector's own rule). An mlx5 device has no parent file.
        on_bond = [rail for rail in rails
                   if node.run(f"cat /sys/class/infiniband/{rail.rdma_device}/parent").stdout.strip() == fab.bond_name]
        rails = on_bond or rails
        if not rails:
            problems.add(f"RoCE v2 GID of {fab.control_ip} ({fab.bond_name})",
                         f"on the bond's RDMA device(s), some of {','.join(fab.rdma_devices)}", "on none of them",
                         f"check 'links' (the bond's address), then `sudo systemctl restart {SERVING_UNIT}`")
            problems.check()
    pinned = node.spec.settings.nccl_ib_hca
    if pinned == "auto":
        expected = [rail.rdma_device for rail in rails]
        hca_fix = (f"the detector leaves out a rail whose device had no ACTIVE port or no RoCE v2 GID at serving "
                   f"start (see the rail's lines here and check 'links'); then `sudo systemctl restart {SERVING_UNIT}`")
        what = "the bond's HCAs" if fab.bond_name else "every rail's HCA"
    else:
        expected = [name for name, _ in parse_hca_list(pinned if isinstance(pinned, str) else ",".join(pinned))]
        hca_fix = f"{REDEPLOY} (roles/rdma passes the pinned value to the detector)"
        what = "nccl_ib_hca as pinned"
    if set(listed) != set(expected):
        problems.add(f"NCCL_IB_HCA in {ROCE_ENV}", f"{','.join(expected)} ({what})", ",".join(listed), hca_fix)
    for rail in rails:
        device, port = rail.rdma_device, listed.get(rail.rdma_device, 1)
        base = port_dir(device, port)
        state = node.run(f"cat {base}/state")
        if "ACTIVE" not in state.stdout:
            problems.add(f"{device} port {port} state (rail {rail.netdev})", "ACTIVE", state.stdout.strip() or state.brief,
                         "check the QSFP link and the peer (`rdma link`); a DOWN port means no carrier")
        ip = rail_ip(fab, rail)
        want_gid, table = ipv4_mapped_gid(ip), gid_table(node, device, port)
        found_at = roce_v2_index(table, ip)
        follows = (f"the GID table follows the address on {rail.netdev}: fix check 'links' first, then "
                   f"`sudo systemctl restart {SERVING_UNIT}` to re-detect")
        if not gid_index:
            if found_at is None:
                problems.add(f"{device} RoCE v2 GID of {ip} (rail {rail.netdev})", f"{want_gid} at some index",
                             "no entry holds it", follows)
            continue
        gid, gid_type = table.get(int(gid_index), ("", ""))
        if not gid_type:  # an unset entry: no address, so no GID
            problems.add(f"{device} GID {gid_index} (rail {rail.netdev})", f"{want_gid} ({ip})", "an empty entry", follows)
        elif gid_type != "RoCE v2":
            problems.add(f"{device} GID {gid_index} type (rail {rail.netdev})", "RoCE v2", gid_type,
                         "the detected index is wrong (index 0 stalls NCCL on RoCE v2): pin "
                         "nccl_ib_gid_index in group_data or restart spark-serving to re-detect")
        elif gid != want_gid:
            held = gid_ipv4(gid) if gid else None
            elsewhere = f"; this device holds it at index {found_at}" if found_at is not None else ""
            problems.add(f"{device} GID {gid_index} (rail {rail.netdev})", f"{want_gid} ({ip})",
                         f"{gid or 'no entry'} ({held or 'not this IPv4'}){elsewhere}", follows)
    container = node.container_env()
    if container is None:
        problems.add("container NCCL_IB_HCA", env.get("NCCL_IB_HCA"), "container not running", CONTAINER_DOWN_FIX)
    else:
        for key in ("NCCL_IB_GID_INDEX", "NCCL_IB_HCA"):
            if container.get(key) != env.get(key):
                problems.add(f"container {key}", f"{env.get(key, 'unset')} (from {ROCE_ENV})", container.get(key, "unset"),
                             f"the engine started with stale RoCE values: `sudo systemctl restart {SERVING_UNIT}`")
    problems.check()


def test_memlock(node):
    problems = Problems(node.name)
    limit = node.container_python("import resource;print(resource.getrlimit(resource.RLIMIT_MEMLOCK))")
    if not limit.ok:
        problems.add("container RLIMIT_MEMLOCK", "(-1, -1)", limit.brief, CONTAINER_DOWN_FIX)
    elif not rlimit_unlimited(parse_rlimit(limit.stdout)):
        problems.add("container RLIMIT_MEMLOCK", "(-1, -1) unlimited", limit.stdout.strip(),
                     "the unit's docker run needs --ulimit memlock=-1:-1; NCCL cannot register RDMA memory otherwise")
    limits_file = node.file(LIMITS_FILE)
    if not limits_file.exists:
        problems.add(LIMITS_FILE, "present", "missing", f"{REDEPLOY} (roles/rdma)")
    elif not limits_conf_memlock_unlimited(limits_file.content_string, node.spec.admin):
        problems.add(LIMITS_FILE, f"soft and hard memlock unlimited for * or {node.spec.admin}",
                     limits_file.content_string, f"{REDEPLOY} (roles/rdma)")
    shown = node.unit_properties("docker.service")
    if shown.get("LimitMEMLOCK") != "infinity":
        problems.add("docker.service LimitMEMLOCK", "infinity", shown.get("LimitMEMLOCK", "unknown"),
                     f"{REDEPLOY} (docker.service drop-in), then `systemctl daemon-reload && systemctl restart docker`")
    drop_ins = shown.get("DropInPaths", "").split()
    # As systemd reads them: in DropInPaths order, [Service] only, the last
    # assignment wins (a commented-out line is no setting).
    declared = None
    for path in drop_ins:
        value = parse_unit_file(node.read_root_file(path) or "").get("Service", {}).get("LimitMEMLOCK")
        if value is not None:
            declared = (path, value)
    if declared is None or declared[1] not in ("infinity", "infinity:infinity"):
        problems.add("docker.service drop-in", "[Service] LimitMEMLOCK=infinity",
                     f"{declared[0]} sets LimitMEMLOCK={declared[1]}" if declared
                     else f"no LimitMEMLOCK in {' '.join(drop_ins)}" if drop_ins else "no drop-ins",
                     f"{REDEPLOY} (roles/rdma); a manager-wide default alone is lost on the next systemd change")
    pid = shown.get("MainPID", "0")
    if pid in ("", "0"):
        problems.add("running dockerd", "a MainPID", "none (docker.service is not running)",
                     "`sudo systemctl start docker`; see `journalctl -u docker`")
    else:
        read = node.run_root(f"cat /proc/{pid}/limits")
        live = proc_limit(read.stdout) if read.ok else None
        if live is None:
            problems.add("running dockerd memlock", "unlimited",
                         f"/proc/{pid}/limits unreadable ({read.brief})" if not read.ok else f"no memlock line in /proc/{pid}/limits",
                         "check that dockerd is running (`systemctl status docker`) and root can read /proc")
        elif live != ("unlimited", "unlimited"):
            problems.add("running dockerd memlock", "unlimited", " / ".join(live),
                         "`sudo systemctl restart docker` to pick up the drop-in")
    problems.check()


def test_infiniband(node):
    problems = Problems(node.name)
    listing = node.run("ls /dev/infiniband")
    host_entries = listing.stdout.split() if listing.ok else []
    if not any(name.startswith("uverbs") for name in host_entries):
        problems.add("/dev/infiniband on the host", "uverbs* devices", host_entries or listing.brief,
                     "load the RDMA stack (`modprobe ib_uverbs`; rdma-core) and check `rdma link`; re-deploy")
    inside = node.container_python("import os,json;print(json.dumps(sorted(os.listdir('/dev/infiniband'))))")
    if not inside.ok:
        problems.add("/dev/infiniband in the container", "uverbs* devices", inside.brief,
                     "the unit's docker run needs --device=/dev/infiniband (or the container is down: see 'serving_unit')")
    elif not any(name.startswith("uverbs") for name in json.loads(inside.stdout)):
        problems.add("/dev/infiniband in the container", "uverbs* devices", inside.stdout.strip(),
                     "restart spark-serving after the host devices exist")
    problems.check()


def test_drm_override(node):
    problems = Problems(node.name)
    override = node.spec.settings.drm_override_file
    path = shlex.quote(override)
    # As root: modprobe reads the file whatever its mode, and a root-only file
    # exists all the same for a `head` run as the admin that cannot open it.
    if node.run_root(f"test -e {path}").ok:
        content = node.run_root(f"head -c 200 {path}")
        problems.add(override, "absent",
                     f"present ({content.stdout.strip()!r})" if content.ok else f"present, unreadable ({content.brief})",
                     "CUDA will see ~62 GB instead of ~120 GB with it; remove it, `update-initramfs -u` and "
                     f"reboot ({REDEPLOY}: roles/gpu does all three)")
    problems.check()


def test_gpu_memory(node):
    problems = Problems(node.name)
    if not node.run("command -v nvidia-smi").ok:
        # Only an inventory that says so (the lab: its VMs have no GPU) may
        # skip; on a Spark a missing driver is a broken node.
        if not node.spec.settings.gpu_expected:
            pytest.skip("gpu_expected is False in the inventory (no GPU on these nodes): nothing to measure")
        problems.add("NVIDIA driver", "nvidia-smi on the PATH", "missing",
                     "install the NVIDIA driver (DGX OS ships it), reboot, and check `nvidia-smi` lists the GPU")
        problems.check()
    minimum = float(node.spec.settings.min_gpu_memory_gib)
    cuda = node.run(f"python3 -c {shlex.quote(CUDA_TOTAL_MEMORY)}")
    if cuda.ok and cuda.stdout.strip().isdigit():
        total_gib, source = int(cuda.stdout.strip()) / 2**30, "CUDA cuDeviceTotalMem"
    else:
        # GB10 prints [N/A] here (unified memory): then only CUDA can tell.
        smi = node.run("nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits")
        totals = parse_gpu_total_mib(smi.stdout) if smi.ok else []
        if not totals:
            problems.add("GPU memory", "a total from CUDA or nvidia-smi",
                         f"neither (CUDA: {cuda.brief}; nvidia-smi: {smi.stdout.strip() or smi.brief})",
                         "check the driver: `nvidia-smi` must list the GPU and CUDA must initialise "
                         "(a driver upgrade without a reboot breaks both); reinstall the driver or reboot")
            problems.check()
        total_gib, source = totals[0] / 1024, "nvidia-smi"
    if total_gib < minimum:
        problems.add(f"GPU memory ({source})", f">= {minimum:g} GiB", f"{total_gib:.1f} GiB",
                     f"~62 GiB means the DRM override is (or was until the last boot) in place: remove "
                     f"{node.spec.settings.drm_override_file}, update-initramfs -u, reboot; otherwise stop leaked containers and drop caches")
    problems.check()


def test_caches(node):
    problems = Problems(node.name)
    home, admin = node.admin_home(), node.spec.admin
    wanted = {**host_cache_dirs(home), "huggingface": hf_cache_dir(home)}
    for path in wanted.values():
        directory = node.file(path)
        if not directory.is_directory:
            problems.add(path, "a directory", "missing", f"{REDEPLOY} (roles/caches)")
            continue
        if directory.user != admin or directory.mode != 0o755:
            problems.add(path, f"owner {admin} mode 0755", f"owner {directory.user} mode {directory.mode:04o}",
                         f"{REDEPLOY} (roles/caches), or `sudo chown {admin} {path} && chmod 0755 {path}`")
    mounts, mounted = container_mounts(node, problems)
    if mounts is not None:
        by_source = {m.source.rstrip("/"): m for m in mounts}
        for name, container_path in ENGINE_CACHES.items():
            host_path = wanted[name]
            mount = by_source.get(host_path)
            if mount is None or mount.destination.rstrip("/") != container_path:
                problems.add(f"{name} cache mount", f"{host_path} -> {container_path}",
                             f"-> {mount.destination}" if mount else "not mounted",
                             "without it every restart recompiles for minutes: re-deploy roles/serving")
            elif not mount.rw:
                problems.add(f"{name} cache mount", "read-write", "read-only", "re-deploy roles/serving")
            elif container_path not in mounted:
                problems.add(f"{name} cache mount", f"{container_path} mounted in the running container",
                             "not in its mount table", f"`sudo systemctl restart {SERVING_UNIT}`")
    problems.check()


def test_hf_cache(node, cluster):
    problems = Problems(node.name)
    hf = hf_cache_dir(node.admin_home())
    head_hf = hf_cache_dir(cluster.head.admin_home())
    if hf != head_hf:
        problems.add("HF cache path", f"{head_hf} (as on {cluster.head.name})", hf,
                     "use the same admin user name and home on every node: the engine resolves the same "
                     "absolute snapshot paths everywhere")
    mounts, mounted = container_mounts(node, problems)
    if mounts is not None:
        mount = next((m for m in mounts if m.source.rstrip("/") == hf), None)
        if mount is None or mount.destination.rstrip("/") != hf:
            problems.add("HF cache mount", f"{hf} -> {hf} (same path)",
                         f"-> {mount.destination}" if mount else "not mounted",
                         "snapshots are absolute symlinks: mounted elsewhere they dangle and the engine says "
                         "'invalid repository ID'; re-deploy roles/serving")
        elif hf not in mounted:
            problems.add("HF cache mount", f"{hf} in the running container", "not in its mount table",
                         f"`sudo systemctl restart {SERVING_UNIT}`")
        env = node.container_env() or {}
        if env.get("HF_HOME") != hf:
            problems.add("container HF_HOME", hf, env.get("HF_HOME", "unset"),
                         "serving.env must set HF_HOME to the mounted path; re-deploy roles/serving")
    problems.check()


def test_env_file(node):
    problems = Problems(node.name)
    env_file = node.file(SERVING_ENV)
    if not env_file.exists:
        problems.add(SERVING_ENV, "present", "missing", f"{REDEPLOY} (roles/serving)")
        problems.check()
    if env_file.mode != 0o600 or env_file.user != "root":
        problems.add(SERVING_ENV, "mode 0600 owner root", f"mode {env_file.mode:04o} owner {env_file.user}",
                     f"{REDEPLOY}, or `sudo chown root {SERVING_ENV} && sudo chmod 0600 {SERVING_ENV}`")
    env = parse_env_file(node.read_root_file(SERVING_ENV) or "")
    fab = node_fabric(node.spec)
    for key in INTERFACE_VARIABLES:
        if env.get(key) != fab.control_interface:
            problems.add(key, fab.control_interface, env.get(key, "unset"),
                         "pin every interface variable to the QSFP control interface (else Gloo/NCCL pick loopback "
                         "or the management NIC); re-deploy roles/serving")
    if is_vllm(node) and env.get("VLLM_HOST_IP") != fab.control_ip:
        problems.add("VLLM_HOST_IP", fab.control_ip, env.get("VLLM_HOST_IP", "unset"),
                     "this node's QSFP control address, never the management one; re-deploy roles/serving")
    problems.check()


def test_container_env(node):
    problems = Problems(node.name)
    env = node.container_env()
    if env is None:
        problems.add(f"container {CONTAINER}", "running", "not running", CONTAINER_DOWN_FIX)
        problems.check()
    fab = node_fabric(node.spec)
    for key in INTERFACE_VARIABLES:
        if env.get(key) != fab.control_interface:
            problems.add(key, fab.control_interface, env.get(key, "unset"),
                         f"the container predates serving.env: `sudo systemctl restart {SERVING_UNIT}`")
    if env.get("NCCL_IB_DISABLE") != "0":
        problems.add("NCCL_IB_DISABLE", "0", env.get("NCCL_IB_DISABLE", "unset"),
                     "NCCL falls back to TCP sockets: re-deploy roles/serving")
    roce = roce_env(node) or {}
    # roce.env leaves NCCL_IB_GID_INDEX out when the rails' indexes differ (NCCL then picks per HCA).
    for key in ("NCCL_IB_HCA", *(("NCCL_IB_GID_INDEX",) if "NCCL_IB_GID_INDEX" in roce or not roce else ())):
        if not env.get(key):
            problems.add(key, roce.get(key, "a detected value"), "unset",
                         f"the unit passes {ROCE_ENV} to docker: re-deploy roles/serving")
    if is_vllm(node) and env.get("VLLM_HOST_IP") != fab.control_ip:
        problems.add("VLLM_HOST_IP", fab.control_ip, env.get("VLLM_HOST_IP", "unset"),
                     f"`sudo systemctl restart {SERVING_UNIT}` after fixing serving.env")
    problems.check()


def unit_running_problems(problems, node, unit_name, after_what):
    """Whether `unit_name` is enabled (the word, not testinfra's is_enabled: that is
    true for every state `systemctl is-enabled` exits 0 on, enabled-runtime,
    gone at the next boot, and static among them; a unit not installed has no
    UnitFileState and LoadState not-found) and active. Returns whether it is active."""
    unit = node.unit_properties(unit_name)
    enabled = unit.get("UnitFileState") or unit.get("LoadState", "")
    if enabled != "enabled":
        problems.add(unit_name, f"enabled ({after_what})", enabled or "unknown",
                     f"`sudo systemctl enable {unit_name}` or {REDEPLOY}")
    active = unit.get("ActiveState", "")
    if active != "active":
        problems.add(unit_name, "active", active or "unknown",
                     f"`sudo systemctl start {unit_name}`; see `journalctl -u {unit_name}`")
    return active == "active"


def test_serving_unit(node):
    problems = Problems(node.name)
    unit_running_problems(problems, node, SERVING_UNIT, "comes back after a power cut")
    status = node.run_root(f"docker inspect -f '{{{{.State.Status}}}}' {CONTAINER}")
    if status.stdout.strip() != "running":
        problems.add(f"container {CONTAINER}", "running", status.stdout.strip() or status.brief,
                     f"see `journalctl -u {SERVING_UNIT}` and `docker logs {CONTAINER}`")
    problems.check()


# Asked on the node itself: the watcher's /state listens on its QSFP address only.
WATCH_STATE_PROBE = r"""
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=10) as r:
    print(json.dumps(json.load(r)))
"""


def test_serving_watch(node, cluster):
    """The watcher that restarts engines of a cluster that fell apart is enabled, running, and watching."""
    problems = Problems(node.name)
    if not unit_running_problems(problems, node, WATCH_UNIT, "watches after every boot"):
        problems.check()
    url = f"http://{node.spec.qsfp_ip}:{node.spec.settings.serving_watch_port}/state"
    answer = node.run(f"python3 -c {shlex.quote(WATCH_STATE_PROBE)} {url}", timeout=30)
    try:
        state = json.loads(answer.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        problems.add(url, "the watcher's state as JSON", answer.brief, f"see `journalctl -u {WATCH_UNIT}`")
        problems.check()
    role = "head" if node.name == cluster.head.name else "worker"
    if state.get("role") != role:
        problems.add(f"{url} role", role, state.get("role"), f"{REDEPLOY} (roles/serving writes watch.json)")
    if state.get("engine_started_at") is None:
        problems.add(f"{url} engine", "an engine container it watches", f"none ({state.get('reason')})",
                     f"see check 'serving_unit' and `journalctl -u {WATCH_UNIT}`")
    problems.check()


def test_ssh_key(node):
    problems = Problems(node.name)
    key_path = f"{node.admin_home()}/{CLUSTER_KEY}"
    key = node.file(key_path)
    if not key.exists:
        problems.add(key_path, "present", "missing", f"{REDEPLOY} (roles/ssh)")
        problems.check()
    if key.mode != 0o600 or key.user != node.spec.admin:
        problems.add(key_path, f"mode 0600 owner {node.spec.admin}", f"mode {key.mode:04o} owner {key.user}",
                     f"`chmod 0600 {key_path}` (ssh refuses a readable key) or {REDEPLOY}")
    derived = node.run(f"ssh-keygen -y -f {shlex.quote(key_path)}")
    published = node.run(f"cat {shlex.quote(key_path)}.pub")
    if not derived.ok:
        problems.add(key_path, "a private key ssh-keygen can read", derived.brief,
                     f"{REDEPLOY} (roles/ssh) to regenerate the pair")
    elif not published.ok or parse_pubkey(derived.stdout)[1] != parse_pubkey(published.stdout)[1]:
        problems.add(f"{key_path}.pub", "the public half of the key", published.brief if not published.ok else "a different key",
                     f"{REDEPLOY} (roles/ssh) to regenerate the pair consistently")
    problems.check()


def test_known_hosts(node, cluster):
    problems = Problems(node.name)
    listing = node.file(KNOWN_HOSTS)
    if not listing.exists:
        problems.add(KNOWN_HOSTS, "present", "missing", f"{REDEPLOY} (roles/ssh)")
        problems.check()
    text = listing.content_string
    for member in cluster.specs:
        live = cluster.node(member.name).run("cat /etc/ssh/ssh_host_ed25519_key.pub")
        if not live.ok:
            problems.add(f"{member.name}'s host key", "readable", live.brief, "check sshd on that node")
            continue
        key_type, key = parse_pubkey(live.stdout)
        revoked = revoked_keys(text, key_type)
        if key in revoked:
            problems.add(f"{KNOWN_HOSTS} @revoked {revoked[key]}",
                         f"{member.name}'s current {key_type} key ...{key[-12:]} not revoked", "revoked",
                         "ssh refuses a revoked key: delete that @revoked line (it is outside the block roles/ssh "
                         f"manages, so a re-deploy keeps it), or if the key is compromised replace {member.name}'s "
                         f"host key and {REDEPLOY}")
        for alias in (member.name, member.qsfp_ip):
            held = known_host_keys(text, alias, key_type)
            if key not in held:
                problems.add(f"{KNOWN_HOSTS} entry for {alias}", f"{member.name}'s current {key_type} key ...{key[-12:]}",
                             f"a stale key ...{held[0][-12:]}" if held else "none",
                             f"{REDEPLOY} (roles/ssh); StrictHostKeyChecking=yes refuses {alias} until then")
    problems.check()
