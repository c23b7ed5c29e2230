"""What the QSFP netdevs (and a bond over them) look like right now, read from sysfs."""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase

# One line per netdev and one per IPv4 address; values never hold spaces
# (lists are comma-joined).
_LINK_SCRIPT = r"""
for name in {names}; do
  d=/sys/class/net/$name
  if [ ! -e "$d" ]; then echo "link=$name present=0"; continue; fi
  carrier=$(cat "$d/carrier" 2>/dev/null || echo unknown)
  master=$(basename "$(readlink "$d/master" 2>/dev/null)" 2>/dev/null)
  slaves=$(cat "$d/bonding/slaves" 2>/dev/null | tr ' ' ',')
  mode=$(cut -d' ' -f1 "$d/bonding/mode" 2>/dev/null)
  nm=$(nmcli -g GENERAL.STATE device show "$name" 2>/dev/null | sed 's/.*(//; s/).*//; s/ /-/g')
  echo "link=$name present=1 carrier=$carrier operstate=$(cat "$d/operstate") mtu=$(cat "$d/mtu") master=$master slaves=$slaves mode=$mode nm=$nm"
  ip -o -4 address show dev "$name" 2>/dev/null | while read -r _ _ _ address _; do echo "address=$address on=$name"; done
done
true
"""


def parse_links(lines: list[str]) -> dict:
    """{"links": {name: {..., "addresses": [...]}}}; unreadable values are None."""
    links: dict[str, dict] = {}
    for line in lines:
        fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
        if "address" in fields and fields.get("on") in links:
            links[fields["on"]]["addresses"].append(fields["address"])
            continue
        if "link" not in fields:
            continue
        mtu = fields.get("mtu", "")
        links[fields["link"]] = {
            "present": fields.get("present") == "1",
            # carrier cannot be read while a port is administratively down
            "carrier": {"1": True, "0": False}.get(fields.get("carrier", "")),
            "operstate": fields.get("operstate") or None,
            "mtu": int(mtu) if mtu.isdigit() else None,
            "master": fields.get("master") or None,
            "slaves": [s for s in fields.get("slaves", "").split(",") if s],
            "mode": fields.get("mode") or None,
            "addresses": [],
            # NetworkManager's state of the device ("unmanaged", "connected",
            # "connecting"...), None without NM or when NM does not know it.
            "nm": fields.get("nm") or None,
        }
    return {"links": links}


class QsfpLinks(FactBase):
    """Each named netdev (present, carrier, operstate, mtu, master, bond
    slaves and mode, IPv4 addresses, NetworkManager's state), so the role knows both whether the
    hardware is there and whether its links are already in place."""

    def command(self, names):
        quoted = " ".join(shlex.quote(name) for name in names)
        return _LINK_SCRIPT.format(names=quoted).strip()

    @staticmethod
    def default():
        return {"links": {}}

    def process(self, output):
        return parse_links(output)
