#!/bin/sh
# Find every configuration, other than spark-cluster's own netplan file, that
# claims one of the QSFP netdevs: netplan files, NetworkManager keyfiles and
# systemd-networkd .network files. Netplan merges every file it reads, so a
# second owner of a port changes what our file means without a word.
#
#   qsfp_owners.sh OWN_FILE NETDEV...
#
# Prints one line per claiming file, values percent-encoded (space %20, tab
# %09, percent %25) so a line always splits on spaces:
#   kind=netplan|networkmanager|networkd path=PATH netdevs=A,B [others=C,D] [id=NM_ID] [content=BASE64]
# netdevs: the NETDEVs it claims; others: netdevs present on this node
# (/sys/class/net, not lo, not a NETDEV) that the same file also claims (moving
# such a file aside would unconfigure them too: the management NIC, say);
# id: the NetworkManager connection id; content: the whole file, base64 (netplan
# only: the role compares its addresses with its own). Exit 0 whatever it finds.
#
# What counts as a claim (a grep-level reading, not netplan's or NM's parser):
# - netplan (*.yaml in /etc/netplan, /run/netplan, /lib/netplan; a file
#   shadowed by a same-named one in a higher directory, or by OWN_FILE's name, is
#   not read by netplan and is skipped): a NETDEV written as a mapping key
#   (`enp1s0f0np0:`), a list item (`- enp1s0f0np0`), an item of a flow list
#   (`interfaces: [a, b]`), or the value of `link:`/`set-name:`, or matched by
#   the glob of a `name:` (a `match:` block). Not read: flow mappings
#   (`match: {name: x}`), YAML anchors/aliases, matches by macaddress or driver.
# - NetworkManager keyfiles (*.nmconnection and extensionless files in
#   /etc/NetworkManager/system-connections, except netplan's own netplan-*):
#   [connection] interface-name= equal to
#   the NETDEV, [ethernet] mac-address= equal to its MAC, [match] interface-name=
#   globs; every condition present must hold. A profile bound to no device at
#   all (a generic DHCP profile) is not a claim: netplan's networkd renderer
#   marks the ports unmanaged for NetworkManager. /run/NetworkManager is not
#   read: what lives there is NM's own (the "Wired connection N" DHCP profiles
#   it makes for every port of a fresh DGX OS, bound to that port) or
#   netplan's, gone at the next boot, and released by the role (nm_release.sh).
# - networkd (*.network in /etc/systemd/network): [Match] Name= (shell globs, a
#   leading ! inverts the list), MACAddress=/PermanentMACAddress=; other match
#   keys (Path=, Driver=, Type=, ...) cannot be evaluated here and count as
#   matching, and a file with no device match at all matches every netdev, as
#   networkd does. .netdev and .link files create or rename devices and
#   configure none: they are not claims.
# Generated files are skipped: /run/systemd/network is netplan's output.
#
# ROOT (default empty) prefixes every path read, so tests run against a
# temporary tree; printed paths never carry it. Runs as root: the files are 0600.
# The network role sends this file's text with `sh -c` (nothing is installed).

if [ "$#" -lt 2 ]; then
    echo "usage: qsfp_owners.sh OWN_FILE NETDEV..." >&2
    exit 2
fi
own=$1
shift
root=${ROOT:-}
wanted="$*"

# Candidates: the QSFP netdevs, then every other netdev present, each with its
# MAC ("-" when unknown), one "name mac" per line.
cands=""
mac_of() {
    cat "$root/sys/class/net/$1/address" 2>/dev/null || echo -
}
for name in "$@"; do
    cands="$cands$name $(mac_of "$name")
"
done
for dir in "$root"/sys/class/net/*; do
    [ -e "$dir" ] || continue
    name=${dir##*/}
    case " $wanted lo " in *" $name "*) continue ;; esac
    cands="$cands$name $(mac_of "$name")
"
done
export cands wanted

# match KIND PATH FILE: the claim line for FILE (read as KIND), or nothing.
match() {
    kind=$1 shown=$2 file=$3
    export kind shown
    awk '
    function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t\r]+$/, "", s); return s }
    function unquote(s) {
        s = trim(s)
        if (s ~ /^".*"$/ || s ~ /^\047.*\047$/) s = substr(s, 2, length(s) - 2)
        return s
    }
    function enc(s) { gsub(/%/, "%25", s); gsub(/ /, "%20", s); gsub(/\t/, "%09", s); return s }
    # A shell glob as an anchored regular expression.
    function glob_re(g,    re, i, j, c, n, cls) {
        re = "^"; n = length(g)
        for (i = 1; i <= n; i++) {
            c = substr(g, i, 1)
            if (c == "*") re = re ".*"
            else if (c == "?") re = re "."
            else if (c == "[" && (j = index(substr(g, i + 1), "]")) > 0) {
                cls = substr(g, i, j + 1); sub(/^\[!/, "[^", cls); re = re cls; i += j
            } else if (index("\\^$.|+(){}[]", c)) re = re "\\" c
            else re = re c
        }
        return re "$"
    }
    function mark_exact(value,    i) { for (i = 1; i <= ncand; i++) if (cand[i] == value) hit[i] = 1 }
    function mark_glob(g,    i, re) { re = glob_re(g); for (i = 1; i <= ncand; i++) if (cand[i] ~ re) hit[i] = 1 }
    # Does NAME match any glob of the space- or semicolon-separated LIST?
    function in_globs(list, name,    n, i, items, inverted, found) {
        list = trim(list); inverted = 0
        if (substr(list, 1, 1) == "!") { inverted = 1; list = substr(list, 2) }
        n = split(list, items, /[ \t;]+/); found = 0
        for (i = 1; i <= n; i++) if (items[i] != "" && name ~ glob_re(items[i])) found = 1
        return inverted ? !found : found
    }
    function in_macs(list, mac,    n, i, items) {
        n = split(tolower(list), items, /[ \t;,]+/)
        for (i = 1; i <= n; i++) if (items[i] != "" && items[i] == tolower(mac)) return 1
        return 0
    }
    BEGIN {
        kind = ENVIRON["kind"]
        ncand = split(ENVIRON["cands"], lines, "\n"); n = 0
        for (i = 1; i <= ncand; i++) if (lines[i] != "") { split(lines[i], f, " "); n++; cand[n] = f[1]; mac[n] = f[2] }
        ncand = n
        split(ENVIRON["wanted"], w, " "); for (i in w) is_wanted[w[i]] = 1
    }
    kind == "netplan" {
        line = $0
        sub(/^[ \t]*#.*/, "", line); sub(/[ \t]+#.*$/, "", line)
        line = trim(line); sub(/^-[ \t]+/, "", line)
        if (line == "") next
        key = ""; value = line
        if (line ~ /:$/) { key = substr(line, 1, length(line) - 1); value = "" }
        else if ((p = index(line, ": ")) > 0) { key = substr(line, 1, p - 1); value = substr(line, p + 2) }
        key = unquote(key); value = unquote(value)
        if (key != "") mark_exact(key)
        if (key == "name" && value != "") mark_glob(value)
        if ((key == "" || key == "link" || key == "set-name") && value != "") mark_exact(value)
        if (value ~ /^\[.*\]$/) {
            k = split(substr(value, 2, length(value) - 2), items, ",")
            for (i = 1; i <= k; i++) mark_exact(unquote(items[i]))
        }
        next
    }
    /^[ \t]*[#;]/ { next }
    /^[ \t]*\[/ { section = trim($0); next }
    {
        p = index($0, "="); if (p == 0) next
        key = trim(substr($0, 1, p - 1)); value = trim(substr($0, p + 1))
    }
    kind == "networkmanager" && section == "[connection]" && key == "interface-name" { nm_name = value }
    kind == "networkmanager" && section == "[connection]" && key == "id" { nm_id = value }
    kind == "networkmanager" && section == "[ethernet]" && key == "mac-address" { macs = value }
    kind == "networkmanager" && section == "[match]" && key == "interface-name" { globs = value }
    kind == "networkd" && section == "[Match]" {
        # An empty assignment resets a list, as in systemd.
        if (key == "Name") globs = (value == "" ? "" : trim(globs " " value))
        else if (key == "MACAddress" || key == "PermanentMACAddress") macs = (value == "" ? "" : macs " " value)
        else if (key ~ /^(Path|Driver|Type|Kind|Property|WLANInterfaceType|SSID|BSSID)$/ && value != "") other = 1
    }
    END {
        if (kind != "netplan") {
            bound = (nm_name != "" || macs != "" || globs != "" || other)
            if (kind == "networkmanager" && !bound) exit
            for (i = 1; i <= ncand; i++) {
                ok = 1
                if (nm_name != "" && cand[i] != nm_name) ok = 0
                if (macs != "" && !in_macs(macs, mac[i])) ok = 0
                if (globs != "" && !in_globs(globs, cand[i])) ok = 0
                if (ok) hit[i] = 1
            }
        }
        mine = ""; theirs = ""
        for (i = 1; i <= ncand; i++) {
            if (!hit[i]) continue
            if (cand[i] in is_wanted) mine = mine (mine == "" ? "" : ",") cand[i]
            else theirs = theirs (theirs == "" ? "" : ",") cand[i]
        }
        if (mine == "") exit
        out = "kind=" kind " path=" enc(ENVIRON["shown"]) " netdevs=" mine
        if (theirs != "") out = out " others=" theirs
        if (nm_id != "") out = out " id=" enc(nm_id)
        print out
    }
    ' "$file"
}

# Netplan: /etc shadows /run shadows /lib, file name by file name.
for dir in /etc/netplan /run/netplan /lib/netplan; do
    for file in "$root$dir"/*.yaml; do
        [ -f "$file" ] || continue
        base=${file##*/}
        path=$dir/$base
        [ "$base" = "${own##*/}" ] && continue
        case $dir in
            /run/netplan) [ -e "$root/etc/netplan/$base" ] && continue ;;
            /lib/netplan) { [ -e "$root/etc/netplan/$base" ] || [ -e "$root/run/netplan/$base" ]; } && continue ;;
        esac
        line=$(match netplan "$path" "$file")
        [ -n "$line" ] && echo "$line content=$(base64 <"$file" | tr -d '\n')"
    done
done

dir=/etc/NetworkManager/system-connections
for file in "$root$dir"/*; do
    [ -f "$file" ] || continue
    base=${file##*/}
    case $base in netplan-*) continue ;; esac
    case $base in *.nmconnection) ;; *.*) continue ;; esac
    line=$(match networkmanager "$dir/$base" "$file")
    [ -n "$line" ] && echo "$line"
done

for file in "$root"/etc/systemd/network/*.network; do
    [ -f "$file" ] || continue
    line=$(match networkd "/etc/systemd/network/${file##*/}" "$file")
    [ -n "$line" ] && echo "$line"
done
exit 0
