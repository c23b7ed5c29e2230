#!/usr/bin/env python3
"""Find the RoCE devices behind a netdev and the GID index of their RoCE v2 IPv4 GID.

NCCL needs NCCL_IB_HCA (which RDMA devices) and NCCL_IB_GID_INDEX (which GID
table entry carries RoCE v2 over the node's IPv4 address). Both differ per
hardware: index 3 on a ConnectX-7, 1 on soft-RoCE (rxe). This reads sysfs
only, so it runs the same on a DGX Spark, in the lab and on test fixtures.

    roce_detect.py --netdev bond0 [--slaves a,b] [--ip 10.0.0.1] [--json | --env | --report]
                   [--hca dev[,dev]] [--gid-index N] [--wait SECONDS] [--output FILE]
    roce_detect.py --rails NETDEV=IP[,NETDEV=IP...] [--json | --env | --report]
                   [--hca dev[,dev]] [--gid-index N] [--wait SECONDS] [--output FILE]

Two shapes. A bond (--netdev): the devices under the bond, one GID index.
Rails (--rails): each netdev is one PCIe half of a CX-7 port with its own
address on its own subnet; each rail's device is the one bound to that
netdev, NCCL_IB_HCA lists them in rail order, and NCCL_IB_GID_INDEX is set
only when every rail's GID sits at the same index (NCCL >= 2.21 picks the
RoCE v2 GID of the socket's address family itself when it is unset).

Exit status 2 with a one-line message on stderr when no RDMA device sits on
the netdev (or a rail), no RoCE v2 IPv4 GID is found, or its port has no
link (--report always exits 0: it is how the deploy's fact reads the same
answer).

Standalone on purpose: stdlib only and Python 3.8 compatible, because this
file is copied to every node and also run as the deploy's fact.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
import tempfile
import time
from collections import Counter

EXIT_NOT_FOUND = 2
ROCE_V2 = "roce v2"
ZERO_GID = ipaddress.IPv6Address("::")


def _read(path):
    """Text of a sysfs attribute, or None: unset GID entries answer EINVAL."""
    try:
        with open(path) as handle:
            return handle.read().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _listdir(path):
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def _numeric(names):
    return sorted(int(name) for name in names if name.isdigit())


def netdev_family(sysfs, netdev, slaves=()):
    """The netdev plus the devices under it (bond slaves), named ones first."""
    base = os.path.join(sysfs, "class", "net", netdev)
    names = [netdev]
    names.extend((_read(os.path.join(base, "bonding", "slaves")) or "").split())
    names.extend(entry[len("lower_"):] for entry in _listdir(base) if entry.startswith("lower_"))
    names.extend(slaves)
    family = []
    for name in names:
        if name and name not in family:
            family.append(name)
    return family


def is_master(sysfs, netdev, slaves=()):
    """Whether the netdev stands above others (a bond, a team): named slaves, a
    bonding/ directory or lower_* links. A physical port is none of these."""
    base = os.path.join(sysfs, "class", "net", netdev)
    if any(slaves) or os.path.isdir(os.path.join(base, "bonding")):
        return True
    return any(entry.startswith("lower_") for entry in _listdir(base))


def _attached_netdevs(sysfs, device):
    """The netdevs a device is bound to: its PCI function's netdevs, or rxe's parent."""
    base = os.path.join(sysfs, "class", "infiniband", device)
    names = set(_listdir(os.path.join(base, "device", "net")))
    parent = _read(os.path.join(base, "parent"))
    if parent:
        names.add(parent)
    return names


def _device_netdevs(sysfs, device):
    """Every netdev a device names: the ones it is bound to, plus GID owners."""
    base = os.path.join(sysfs, "class", "infiniband", device)
    names = _attached_netdevs(sysfs, device)
    for port in _numeric(_listdir(os.path.join(base, "ports"))):
        ndevs = os.path.join(base, "ports", str(port), "gid_attrs", "ndevs")
        for index in _listdir(ndevs):
            owner = _read(os.path.join(ndevs, index))
            if owner:
                names.add(owner)
    return names


def _parse_gid(text):
    try:
        return ipaddress.IPv6Address(text)
    except (ValueError, TypeError):
        return None


def _port_state(text):
    # "4: ACTIVE" -> "ACTIVE"; unreadable counts as unknown, not as down.
    if not text:
        return None
    return text.split(":", 1)[-1].strip().upper()


def roce_v2_ipv4_gids(sysfs, device, family, ip=None):
    """(port, index, gid, ipv4, state) for each RoCE v2 IPv4-mapped GID of a device."""
    base = os.path.join(sysfs, "class", "infiniband", device, "ports")
    found = []
    for port in _numeric(_listdir(base)):
        port_dir = os.path.join(base, str(port))
        state = _port_state(_read(os.path.join(port_dir, "state")))
        for index in _numeric(_listdir(os.path.join(port_dir, "gids"))):
            gid_text = _read(os.path.join(port_dir, "gids", str(index)))
            gid = _parse_gid(gid_text)
            if gid is None or gid == ZERO_GID or gid.ipv4_mapped is None:
                continue
            gid_type = _read(os.path.join(port_dir, "gid_attrs", "types", str(index)))
            if (gid_type or "").lower() != ROCE_V2:
                continue
            owner = _read(os.path.join(port_dir, "gid_attrs", "ndevs", str(index)))
            if owner and owner not in family:
                continue  # an address of some other upper device (a VLAN, say)
            if ip and str(gid.ipv4_mapped) != ip:
                continue
            found.append((port, index, gid_text, str(gid.ipv4_mapped), state))
    return found


def _result(netdev, family, ip):
    return {
        "netdev": netdev,
        "netdevs": family,
        "ip": ip,
        "devices": [],
        "hcas": [],
        "gid_index": None,
        "gid_note": None,
        "port": None,
        "gids": {},
        "rails": None,
        "pinned": {"hca": None, "gid_index": None},
        "problem": None,
        "message": None,
    }


def _fail(result, problem, message):
    result["problem"] = problem
    result["message"] = message
    return result


def _split_pins(hca):
    """"a,b:1" -> ["a", "b:1"]; NCCL accepts an optional :port on each name."""
    return [name.strip() for name in (hca or "").split(",") if name.strip()]


def detect(sysfs="/sys", netdev="bond0", slaves=(), ip=None, hca=None, gid_index=None):
    """Always returns the result dict; `problem` says what is missing, if anything."""
    family = netdev_family(sysfs, netdev, slaves)
    result = _result(netdev, family, ip)
    pins = _split_pins(hca)
    result["pinned"] = {"hca": pins or None, "gid_index": gid_index}
    if pins and gid_index is not None:
        result.update(hcas=pins, gid_index=gid_index)
        return result

    lower = [name for name in family if name != netdev] or [netdev]
    present = _listdir(os.path.join(sysfs, "class", "infiniband"))
    if pins:
        missing = [pin for pin in pins if pin.split(":")[0] not in present]
        if missing:
            return _fail(result, "no_device", "pinned RoCE device %s not found (rdma link / ibv_devices)" % ",".join(missing))
        devices = [pin.split(":")[0] for pin in pins]
    else:
        devices = [name for name in present if _device_netdevs(sysfs, name) & set(family)]
    if not devices:
        return _fail(
            result, "no_device",
            "no RoCE device on %s (rdma link / ibv_devices show none)" % "/".join(lower),
        )

    for device in devices:
        gids = roce_v2_ipv4_gids(sysfs, device, family, ip)
        entry = {"name": device, "netdevs": sorted(_device_netdevs(sysfs, device)), "gid_index": None,
                 "port": None, "gid": None, "ipv4": None, "state": None}
        if gids:
            port, index, gid, ipv4, state = gids[0]
            entry.update(gid_index=index, port=port, gid=gid, ipv4=ipv4, state=state)
        result["devices"].append(entry)

    if gid_index is not None:
        result.update(hcas=pins or devices, gid_index=gid_index)
        return result

    with_gid = [entry for entry in result["devices"] if entry["gid_index"] is not None]
    usable = [entry for entry in with_gid if entry["state"] in (None, "ACTIVE")]
    names = "/".join(devices)
    wanted = "for %s " % ip if ip else ""
    if not with_gid:
        return _fail(
            result, "no_ipv4_gid",
            "no RoCE v2 IPv4 GID %son %s (is %s up with its address?)" % (wanted, names, netdev),
        )
    if not usable:
        return _fail(
            result, "port_down",
            "RoCE v2 IPv4 GID %son %s but no port is ACTIVE (cable? link?)" % (wanted, names),
        )

    # A device bound to the bond itself (a RoCE LAG device, or soft-RoCE moved
    # onto the bond) carries the bond's traffic; a device left on a slave port
    # then receives nothing, so NCCL must not be pointed at it. Only a bond has
    # slaves to leave out: on a physical port every device naming it counts.
    if is_master(sysfs, netdev, slaves):
        on_bond = [entry for entry in usable if netdev in _attached_netdevs(sysfs, entry["name"])]
        if on_bond:
            usable = on_bond

    # NCCL takes one GID index for all HCAs: keep the index most of them agree on.
    counts = Counter(entry["gid_index"] for entry in usable)
    index = sorted(counts, key=lambda value: (-counts[value], value))[0]
    chosen = [entry for entry in usable if entry["gid_index"] == index]
    # A pinned `dev:port` reaches NCCL as the user wrote it.
    as_pinned = dict((pin.split(":")[0], pin) for pin in pins)
    result.update(
        hcas=[as_pinned.get(entry["name"], entry["name"]) for entry in chosen],
        gid_index=index,
        port=chosen[0]["port"],
        gids={entry["name"]: entry["gid"] for entry in chosen},
    )
    return result


# --- rails: one netdev per PCIe half, each with its own address ---------------------

def parse_rails(text):
    """"a=192.168.100.10,b=192.168.101.10" -> [("a", "192.168.100.10"), ...].

    A /prefix after the address is accepted and dropped (netplan writes it so).
    Raises ValueError naming the bad entry."""
    rails = []
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        netdev, sep, address = item.partition("=")
        netdev = netdev.strip()
        if not sep or not netdev or "/" in netdev:
            raise ValueError("rail %r is not NETDEV=IP" % item)
        try:
            ip = str(ipaddress.IPv4Interface(address.strip()).ip)
        except ValueError:
            raise ValueError("rail %r has no IPv4 address" % item)
        if netdev in [name for name, _ in rails]:
            raise ValueError("rail %s is listed twice" % netdev)
        rails.append((netdev, ip))
    if not rails:
        raise ValueError("no rail given (NETDEV=IP[,NETDEV=IP...])")
    return rails


def _gid_owners(sysfs, device):
    """The netdevs named as owners of a device's GIDs."""
    return _device_netdevs(sysfs, device) - _attached_netdevs(sysfs, device)


def _master_of(sysfs, netdev):
    """The bond (or other master) a netdev is enslaved to, else None."""
    link = os.path.join(sysfs, "class", "net", netdev, "master")
    try:
        return os.path.basename(os.readlink(link))
    except OSError:
        return None


def rail_device(sysfs, netdev, ip=None):
    """The RDMA device of one rail: the one bound to its netdev (mlx5: the PCI
    function's net/ entry; rxe: its parent). A /sys without those links (a
    container's) still names the netdev as the owner of the device's GIDs.
    Of several candidates, the one carrying the rail's GID, else the first."""
    present = _listdir(os.path.join(sysfs, "class", "infiniband"))
    candidates = [name for name in present if netdev in _attached_netdevs(sysfs, name)]
    if not candidates:
        candidates = [name for name in present if netdev in _gid_owners(sysfs, name)]
    master = _master_of(sysfs, netdev)
    if not candidates and master:
        # Still enslaved to a bond the network role is about to delete: a
        # soft-RoCE device sits on the bond meanwhile (the lab; a CX-7's mlx5
        # device stays bound to its port). It has no GID for the rail yet,
        # which the role checks again once the rail has its address.
        candidates = [name for name in present if master in _attached_netdevs(sysfs, name)]
    for name in candidates:
        if roce_v2_ipv4_gids(sysfs, name, [netdev], ip):
            return name
    return candidates[0] if candidates else None


def _first_port(sysfs, device):
    """(port, state) of a device's lowest port, for a rail with no GID yet."""
    base = os.path.join(sysfs, "class", "infiniband", device, "ports")
    for port in _numeric(_listdir(base)):
        return port, _port_state(_read(os.path.join(base, str(port), "state")))
    return None, None


def _rail(sysfs, netdev, ip):
    rail = {"netdev": netdev, "ip": ip, "device": None, "gid_index": None, "gid": None,
            "port": None, "state": None}
    device = rail_device(sysfs, netdev, ip)
    if device is None:
        return rail
    rail["device"] = device
    gids = roce_v2_ipv4_gids(sysfs, device, [netdev], ip)
    if gids:
        port, index, gid, _, state = gids[0]
        rail.update(gid_index=index, gid=gid, port=port, state=state)
    else:
        rail["port"], rail["state"] = _first_port(sysfs, device)
    return rail


def _rail_problem(sysfs, rail):
    """(problem, one-line message) of a rail NCCL cannot use, else None."""
    netdev, ip, device = rail["netdev"], rail["ip"], rail["device"]
    if device is None:
        return "no_device", "no RoCE device on rail %s (rdma link / ibv_devices show none)" % netdev
    # An unreadable carrier or port state is unknown, not down (as for a bond).
    carrier = _read(os.path.join(sysfs, "class", "net", netdev, "carrier"))
    if carrier == "0" or rail["state"] not in (None, "ACTIVE"):
        return "port_down", "rail %s (%s, %s) has no link: carrier %s, port %s (cable? link?)" % (
            netdev, device, ip, carrier or "unknown", rail["state"] or "unknown")
    if rail["gid_index"] is None:
        return "no_ipv4_gid", "no RoCE v2 IPv4 GID for %s on %s (is rail %s up with its address?)" % (
            ip, device, netdev)
    return None


def _unique(names):
    seen = []
    for name in names:
        if name not in seen:
            seen.append(name)
    return seen


def detect_rails(sysfs="/sys", rails=(), hca=None, gid_index=None):
    """Always returns the result dict, with "rails" in the given order;
    `problem` says what is missing on the first rail that lacks something, and
    `message` names every such rail on one line."""
    rails = list(rails)
    result = _result(None, [netdev for netdev, _ in rails], None)
    pins = _split_pins(hca)
    result["pinned"] = {"hca": pins or None, "gid_index": gid_index}
    if pins and gid_index is not None:
        result["rails"] = [{"netdev": netdev, "ip": ip, "device": None, "gid_index": None, "gid": None,
                            "port": None, "state": None} for netdev, ip in rails]
        result.update(hcas=pins, gid_index=gid_index)
        return result

    present = _listdir(os.path.join(sysfs, "class", "infiniband"))
    missing = [pin for pin in pins if pin.split(":")[0] not in present]
    if missing:
        return _fail(result, "no_device", "pinned RoCE device %s not found (rdma link / ibv_devices)" % ",".join(missing))

    result["rails"] = [_rail(sysfs, netdev, ip) for netdev, ip in rails]
    for rail in result["rails"]:
        if rail["device"] is not None:
            result["devices"].append({
                "name": rail["device"], "netdevs": sorted(_device_netdevs(sysfs, rail["device"])),
                "gid_index": rail["gid_index"], "port": rail["port"], "gid": rail["gid"],
                "ipv4": rail["ip"] if rail["gid"] else None, "state": rail["state"],
            })

    # Pinned HCAs choose which rails NCCL uses; the other rails are not its concern.
    as_pinned = dict((pin.split(":")[0], pin) for pin in pins)
    used = [rail for rail in result["rails"] if not pins or rail["device"] in as_pinned]
    if pins and not used:
        return _fail(result, "no_device", "pinned RoCE device %s on none of the rails %s" % (
            ",".join(pins), "/".join(netdev for netdev, _ in rails)))

    if gid_index is None:
        problems = [found for found in (_rail_problem(sysfs, rail) for rail in used) if found]
    else:  # a pinned index needs the devices only, as for a bond
        problems = [("no_device", "no RoCE device on rail %s (rdma link / ibv_devices show none)" % rail["netdev"])
                    for rail in used if rail["device"] is None]
    if problems:
        return _fail(result, problems[0][0], "; ".join(message for _, message in problems))

    result["hcas"] = _unique(as_pinned.get(rail["device"], rail["device"]) for rail in used)
    ports = set(rail["port"] for rail in used)
    result["port"] = ports.pop() if len(ports) == 1 else None
    result["gids"] = dict((rail["device"], rail["gid"]) for rail in used if rail["gid"])
    if gid_index is not None:
        result["gid_index"] = gid_index
        return result
    indexes = set(rail["gid_index"] for rail in used)
    if len(indexes) == 1:
        result["gid_index"] = indexes.pop()
    else:
        # NCCL takes one index for all HCAs; with none set it finds each
        # device's RoCE v2 GID for the socket's address family by itself.
        result["gid_note"] = "RoCE v2 GID indexes differ across rails (%s): NCCL_IB_GID_INDEX left unset, NCCL picks each HCA's RoCE v2 GID" % (
            ", ".join("%s/%s %d" % (rail["netdev"], rail["device"], rail["gid_index"]) for rail in used))
    return result


def env_lines(result):
    """What NCCL and docker read; no NCCL_IB_GID_INDEX when the rails disagree."""
    lines = ["NCCL_IB_HCA=%s" % ",".join(result["hcas"])]
    if result.get("gid_index") is not None:
        lines.append("NCCL_IB_GID_INDEX=%d" % result["gid_index"])
    return "\n".join(lines) + "\n"


def write_private(path, text):
    """Atomic, 0600 from the first byte: readers never see half a file or a wider mode."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o755)
    handle, temporary = tempfile.mkstemp(prefix=".roce-", dir=directory)
    try:
        os.fchmod(handle, 0o600)
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def _parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--netdev", help="the bond (or netdev) carrying the node's QSFP address (default bond0)")
    parser.add_argument("--slaves", default="", help="comma-separated lower netdevs (before the bond exists)")
    parser.add_argument("--ip", help="only accept the GID of this IPv4 address")
    parser.add_argument("--rails", help="NETDEV=IP[,NETDEV=IP...]: one PCIe half per rail, each with its own "
                                        "address (instead of --netdev/--slaves/--ip)")
    parser.add_argument("--hca", help="pinned NCCL_IB_HCA value (skips device detection)")
    parser.add_argument("--gid-index", type=int, help="pinned NCCL_IB_GID_INDEX (skips GID detection)")
    parser.add_argument("--sysfs", default="/sys", help="sysfs root (tests point it at fixtures)")
    parser.add_argument("--wait", type=float, default=0, help="seconds to keep looking before giving up")
    parser.add_argument("--output", help="write the output to this file (atomically, mode 0600)")
    form = parser.add_mutually_exclusive_group()
    form.add_argument("--json", dest="form", action="store_const", const="json")
    form.add_argument("--env", dest="form", action="store_const", const="env")
    form.add_argument("--report", dest="form", action="store_const", const="report",
                      help="JSON, exit 0 even when nothing is found")
    parser.set_defaults(form="json")
    args = parser.parse_args(argv)
    if args.rails is not None:
        if args.netdev or args.slaves or args.ip:
            parser.error("--rails replaces --netdev/--slaves/--ip")
        try:
            args.rails = parse_rails(args.rails)
        except ValueError as error:
            parser.error("--rails: %s" % error)
    return args


def main(argv=None):
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    slaves = [name for name in args.slaves.split(",") if name]
    deadline = time.monotonic() + max(args.wait, 0)
    while True:
        if args.rails is not None:
            result = detect_rails(args.sysfs, args.rails, args.hca, args.gid_index)
        else:
            result = detect(args.sysfs, args.netdev or "bond0", slaves, args.ip, args.hca, args.gid_index)
        if result["problem"] is None or args.form == "report" or time.monotonic() >= deadline:
            break
        time.sleep(0.5)

    if result["problem"] is not None and args.form != "report":
        sys.stderr.write("roce_detect: %s\n" % result["message"])
        return EXIT_NOT_FOUND
    if result["gid_note"] and args.form == "env":
        # The serving unit runs this as ExecStartPre: stderr lands in its journal.
        sys.stderr.write("roce_detect: %s\n" % result["gid_note"])
    text = env_lines(result) if args.form == "env" else json.dumps(result, sort_keys=True) + "\n"
    if args.output:
        write_private(args.output, text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
