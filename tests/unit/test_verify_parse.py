"""The verification suite's parsers, on text as the nodes print it."""

import json

import pytest

from sparkverify import parse


def test_env_file_as_docker_and_systemd_write_it():
    text = "# managed\n\nNCCL_IB_HCA=rocep1s0f0\nexport NCCL_IB_GID_INDEX='3'\nX=\"a b\"\nEMPTY=\nbroken line\n"
    assert parse.parse_env_file(text) == {"NCCL_IB_HCA": "rocep1s0f0", "NCCL_IB_GID_INDEX": "3", "X": "a b", "EMPTY": ""}


@pytest.mark.parametrize(
    "value, devices",
    [
        ("rocep1s0f0", [("rocep1s0f0", 1)]),
        ("=rocep1s0f0:1,roceP2p1s0f0:2", [("rocep1s0f0", 1), ("roceP2p1s0f0", 2)]),
        ("", []),
    ],
)
def test_hca_list_in_nccl_syntax(value, devices):
    assert parse.parse_hca_list(value) == devices


def test_ipv4_mapped_gid_round_trip():
    gid = parse.ipv4_mapped_gid("10.0.0.1")
    assert gid == "0000:0000:0000:0000:0000:ffff:0a00:0001"
    assert parse.gid_ipv4(gid) == "10.0.0.1"
    assert parse.gid_ipv4("fe80:0000:0000:0000:5054:00ff:fe12:3456") is None
    assert parse.gid_ipv4("garbage") is None


@pytest.mark.parametrize("text, unlimited", [("(-1, -1)\n", True), ("(8388608, 8388608)", False),
                                             ("(18446744073709551615, -1)", True), ("(-1, 65536)", False)])
def test_rlimit(text, unlimited):
    assert parse.rlimit_unlimited(parse.parse_rlimit(text)) is unlimited


def test_rlimit_rejects_noise():
    with pytest.raises(ValueError):
        parse.parse_rlimit("[1, 2, 3]")


def test_systemctl_show_and_proc_limits():
    props = parse.parse_systemctl_show("LimitMEMLOCK=infinity\nDropInPaths=/a.conf /b.conf\nMainPID=812\n")
    assert props == {"LimitMEMLOCK": "infinity", "DropInPaths": "/a.conf /b.conf", "MainPID": "812"}
    limits = ("Limit                     Soft Limit           Hard Limit           Units\n"
              "Max locked memory         8388608              8388608              bytes\n")
    assert parse.proc_limit(limits) == ("8388608", "8388608")


@pytest.mark.parametrize(
    "text, ok",
    [("* soft memlock unlimited\n* hard memlock unlimited\n", True), ("* - memlock unlimited # all\n", True),
     ("nvidia - memlock infinity\n", True), ("* soft memlock unlimited\n", False),
     ("# * - memlock unlimited\n", False), ("* hard memlock 65536\n", False),
     # another user's line is not the admin's limit; groups are not resolved
     ("guest soft memlock unlimited\nguest hard memlock unlimited\n", False), ("@docker - memlock unlimited\n", False),
     # pam_limits: the admin's own line wins over `*`, the last line of a domain wins
     ("* - memlock unlimited\nnvidia hard memlock 65536\n", False),
     ("nvidia - memlock 65536\n* - memlock unlimited\n", False),
     ("* - memlock unlimited\n* soft memlock 65536\n", False),
     ("* - memlock 65536\n* - memlock unlimited\n", True)],
)
def test_limits_conf(text, ok):
    assert parse.limits_conf_memlock_unlimited(text, "nvidia") is ok


def test_unit_file_sections_comments_and_the_last_assignment():
    text = "\n".join([
        "# Managed by spark-cluster",
        "LimitNOFILE=1  ",
        "[Service]",
        "; LimitMEMLOCK=1",
        "#LimitMEMLOCK=2",
        "LimitMEMLOCK = 65536",
        "ExecStart=/usr/bin/docker run \\",
        "    # a comment inside the continuation",
        "    --rm image",
        "[Unit]",
        "Description=x=y",
        "[Service]",
        "LimitMEMLOCK=infinity",
    ])
    assert parse.parse_unit_file(text) == {
        "Service": {"LimitMEMLOCK": "infinity", "ExecStart": "/usr/bin/docker run --rm image"},
        "Unit": {"Description": "x=y"},
    }


@pytest.mark.parametrize("text", ["[Service]\n# LimitMEMLOCK=infinity\n", "[Unit]\nLimitMEMLOCK=infinity\n",
                                  "LimitMEMLOCK=infinity\n", "[Service]\nLimitMEMLOCK=infinity\nLimitMEMLOCK=8M\n"])
def test_unit_file_memlock_not_set_to_infinity(text):
    assert parse.parse_unit_file(text).get("Service", {}).get("LimitMEMLOCK") != "infinity"


def test_ip_addr_json():
    text = json.dumps([{"ifname": "bond0", "flags": ["BROADCAST", "MULTICAST", "MASTER", "UP", "LOWER_UP"],
                        "mtu": 9000, "operstate": "UP",
                        "addr_info": [{"family": "inet", "local": "10.0.0.2", "prefixlen": 24},
                                      {"family": "inet6", "local": "fe80::1", "prefixlen": 64}]}])
    link = parse.parse_ip_addr_json(text)
    assert link.up and link.mtu == 9000 and link.ipv4 == [("10.0.0.2", 24)]
    down = parse.parse_ip_addr_json(text.replace('"LOWER_UP"', '"NO-CARRIER"'))
    assert not down.up


def test_docker_mounts_and_mountinfo():
    mounts = parse.parse_docker_mounts(json.dumps([
        {"Type": "bind", "Source": "/home/spark/.cache/huggingface", "Destination": "/home/spark/.cache/huggingface", "RW": True},
        {"Type": "bind", "Source": "/home/spark/.cache/spark-cluster/vllm", "Destination": "/root/.cache/vllm", "RW": False},
    ]))
    assert mounts[1] == parse.Mount("/home/spark/.cache/spark-cluster/vllm", "/root/.cache/vllm", False, "bind")
    assert parse.parse_docker_mounts("null") == []
    info = ("36 35 98:0 /mnt1 /root/.cache/vllm rw,noatime master:1 - ext4 /dev/root rw,errors=continue\n"
            "37 35 98:0 /x /with\\040space rw - ext4 /dev/sda1 rw\n")
    table = parse.parse_mountinfo(info)
    assert table["/root/.cache/vllm"] == {"root": "/mnt1", "options": "rw,noatime", "fstype": "ext4", "source": "/dev/root"}
    assert "/with space" in table


def _hashed(name: str, salt: bytes = b"0123456789abcdef0123") -> str:
    import base64
    import hashlib
    import hmac
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


def test_known_hosts_plain_hashed_ports_and_markers():
    text = "\n".join([
        "# comment",
        "spark-1,10.0.0.1 ssh-ed25519 KEYONE",
        f"{_hashed('spark-2')} ssh-ed25519 KEYTWO",
        "[127.0.0.1]:2222 ssh-ed25519 LABKEY",
        "@revoked spark-1 ssh-ed25519 OLDKEY",
        "spark-1 ssh-rsa RSAKEY",
    ])
    assert parse.known_host_keys(text, "spark-1", "ssh-ed25519") == ["KEYONE"]
    assert parse.known_host_keys(text, "10.0.0.1", "ssh-ed25519") == ["KEYONE"]
    assert parse.known_host_keys(text, "spark-2", "ssh-ed25519") == ["KEYTWO"]
    assert parse.known_host_keys(text, "127.0.0.1", "ssh-ed25519") == []
    assert parse.known_host_keys(text, "[127.0.0.1]:2222", "ssh-ed25519") == ["LABKEY"]


def test_revoked_keys_whatever_the_host_pattern():
    text = "\n".join([
        "spark-1,10.0.0.1 ssh-ed25519 KEYONE",
        "@revoked spark-1 ssh-ed25519 OLDKEY",
        "@revoked * ssh-ed25519 KEYTWO",
        f"@revoked {_hashed('spark-3')} ssh-ed25519 KEYTHREE",
        "@revoked spark-1 ssh-rsa RSAKEY",
        "@cert-authority * ssh-ed25519 CAKEY",
        "# @revoked * ssh-ed25519 COMMENTED",
    ])
    assert parse.revoked_keys(text, "ssh-ed25519") == {"OLDKEY": "spark-1", "KEYTWO": "*", "KEYTHREE": _hashed("spark-3")}
    assert parse.revoked_keys(text, "ssh-rsa") == {"RSAKEY": "spark-1"}
    # a revoked line is never a host key
    assert parse.known_host_keys(text, "spark-1", "ssh-ed25519") == ["KEYONE"]


def test_pubkey_gpu_and_ping():
    assert parse.parse_pubkey("ssh-ed25519 AAAAC3Nz root@spark-1\n") == ("ssh-ed25519", "AAAAC3Nz")
    with pytest.raises(ValueError):
        parse.parse_pubkey("")
    assert parse.parse_gpu_total_mib("[N/A]\n") == []
    assert parse.parse_gpu_total_mib("122572\n") == [122572.0]
    assert parse.parse_ping("2 packets transmitted, 2 received, 0% packet loss") == "ok"
    assert parse.parse_ping("ping: local error: message too long, mtu=1500") == "too_big"
    assert parse.parse_ping("2 packets transmitted, 0 received, 100% packet loss") == "no_reply"
    assert parse.parse_ping("ping: SO_BINDTODEVICE bond0: No such device") == "error"


# `ping -M do -s 8972 -c 3 -W 2 -I bond0 10.0.0.2` as iputils prints it (stdout
# and stderr together, as the check reads them).
PING_HEADER = "PING 10.0.0.2 (10.0.0.2) from 10.0.0.1 bond0: 8972(9000) bytes of data.\n"
PING_SAMPLES = {
    "full": ("ok", PING_HEADER + """8980 bytes from 10.0.0.2: icmp_seq=1 ttl=64 time=0.412 ms
8980 bytes from 10.0.0.2: icmp_seq=2 ttl=64 time=0.298 ms
8980 bytes from 10.0.0.2: icmp_seq=3 ttl=64 time=0.301 ms

--- 10.0.0.2 ping statistics ---
3 packets transmitted, 3 received, 0% packet loss, time 2003ms
rtt min/avg/max/mdev = 0.298/0.337/0.412/0.052 ms
"""),
    "partial": ("lossy", PING_HEADER + """8980 bytes from 10.0.0.2: icmp_seq=1 ttl=64 time=0.412 ms
8980 bytes from 10.0.0.2: icmp_seq=3 ttl=64 time=0.301 ms

--- 10.0.0.2 ping statistics ---
3 packets transmitted, 2 received, 33.3333% packet loss, time 2031ms
rtt min/avg/max/mdev = 0.301/0.356/0.412/0.055 ms
"""),
    "none": ("no_reply", PING_HEADER + """
--- 10.0.0.2 ping statistics ---
3 packets transmitted, 0 received, 100% packet loss, time 2046ms

"""),
    "unreachable": ("no_reply", PING_HEADER + """From 10.0.0.1 icmp_seq=1 Destination Host Unreachable
From 10.0.0.1 icmp_seq=2 Destination Host Unreachable
From 10.0.0.1 icmp_seq=3 Destination Host Unreachable

--- 10.0.0.2 ping statistics ---
3 packets transmitted, 0 received, +3 errors, 100% packet loss, time 2043ms
pipe 3
"""),
    "message_too_long": ("too_big", PING_HEADER + """ping: local error: message too long, mtu=1500
ping: local error: message too long, mtu=1500
ping: local error: message too long, mtu=1500

--- 10.0.0.2 ping statistics ---
3 packets transmitted, 0 received, +3 errors, 100% packet loss, time 2046ms

"""),
    "frag_needed": ("too_big", PING_HEADER + """From 10.0.0.254 icmp_seq=1 Frag needed and DF set (mtu = 1500)
8980 bytes from 10.0.0.2: icmp_seq=2 ttl=64 time=0.402 ms
8980 bytes from 10.0.0.2: icmp_seq=3 ttl=64 time=0.311 ms

--- 10.0.0.2 ping statistics ---
3 packets transmitted, 2 received, +1 errors, 33.3333% packet loss, time 2012ms
rtt min/avg/max/mdev = 0.311/0.356/0.402/0.045 ms
"""),
    "duplicates": ("ok", PING_HEADER + """8980 bytes from 10.0.0.2: icmp_seq=1 ttl=64 time=0.412 ms
8980 bytes from 10.0.0.2: icmp_seq=1 ttl=64 time=0.415 ms (DUP!)
8980 bytes from 10.0.0.2: icmp_seq=2 ttl=64 time=0.298 ms
8980 bytes from 10.0.0.2: icmp_seq=3 ttl=64 time=0.301 ms

--- 10.0.0.2 ping statistics ---
3 packets transmitted, 3 received, +1 duplicates, 0% packet loss, time 2003ms
rtt min/avg/max/mdev = 0.298/0.356/0.415/0.052 ms
"""),
    "busybox": ("lossy", """PING 10.0.0.2 (10.0.0.2): 8972 data bytes
8980 bytes from 10.0.0.2: seq=0 ttl=64 time=0.512 ms

--- 10.0.0.2 ping statistics ---
3 packets transmitted, 1 packets received, 66% packet loss
round-trip min/avg/max = 0.512/0.512/0.512 ms
"""),
    "no_device": ("error", "ping: SO_BINDTODEVICE bond0: No such device\n"),
}


@pytest.mark.parametrize("sample", sorted(PING_SAMPLES))
def test_ping_needs_every_packet_answered(sample):
    verdict, text = PING_SAMPLES[sample]
    assert parse.parse_ping(text) == verdict


def test_ping_counts_from_the_statistics_line():
    assert parse.ping_counts(PING_SAMPLES["partial"][1]) == (3, 2)
    assert parse.ping_counts(PING_SAMPLES["busybox"][1]) == (3, 1)
    assert parse.ping_counts("ping: SO_BINDTODEVICE bond0: No such device") is None


CX7_PORT = "/sys/class/infiniband/rocep1s0f1/ports/1"


def test_gid_table_from_one_grep_of_the_port():
    # grep -s -H . PORT/gids/* PORT/gid_attrs/types/*: unset entries read as zeros and have no type line.
    text = (f"{CX7_PORT}/gids/0:fe80:0000:0000:0000:0a5f:1aff:fe00:0001\n"
            f"{CX7_PORT}/gids/1:fe80:0000:0000:0000:0a5f:1aff:fe00:0001\n"
            f"{CX7_PORT}/gids/2:0000:0000:0000:0000:0000:ffff:c0a8:640b\n"
            f"{CX7_PORT}/gids/3:0000:0000:0000:0000:0000:ffff:c0a8:640b\n"
            f"{CX7_PORT}/gids/4:0000:0000:0000:0000:0000:0000:0000:0000\n"
            f"{CX7_PORT}/gid_attrs/types/0:IB/RoCE v1\n{CX7_PORT}/gid_attrs/types/1:RoCE v2\n"
            f"{CX7_PORT}/gid_attrs/types/2:IB/RoCE v1\n{CX7_PORT}/gid_attrs/types/3:RoCE v2\n")
    table = parse.parse_gid_table(text)
    assert table[3] == ("0000:0000:0000:0000:0000:ffff:c0a8:640b", "RoCE v2")
    assert table[4] == ("0000:0000:0000:0000:0000:0000:0000:0000", "")
    # The RoCE v2 entry of that IPv4, not the v1 entry before it, nor another address's.
    assert parse.roce_v2_index(table, "192.168.100.11") == 3
    assert parse.roce_v2_index(table, "192.168.101.11") is None
    assert parse.parse_gid_table("") == {}


@pytest.mark.parametrize("text, gbits", [
    ("100 Gb/sec (2X HDR)\n", 100.0), ("200 Gb/sec (4X HDR)", 200.0), ("2.5 Gb/sec (1X SDR)", 2.5),
    ("invalid", None), ("", None),
])
def test_link_rate_as_sysfs_reports_it(text, gbits):
    assert parse.parse_link_rate(text) == gbits


WRITE_BW_CLIENT = """\
---------------------------------------------------------------------------------------
                    RDMA_Write BW Test
 Dual-port       : OFF\t\tDevice         : rocep1s0f1
 Number of qps   : 1\t\tTransport type : IB
 Connection type : RC\t\tUsing SRQ      : OFF
 TX depth        : 128
 CQ Moderation   : 1
 Mtu             : 4096[B]
 Link type       : Ethernet
 GID index       : 3
 Max inline data : 0[B]
 rdma_cm QPs\t : OFF
 Data ex. method : Ethernet
---------------------------------------------------------------------------------------
 local address: LID 0000 QPN 0x0107 PSN 0x4b2f1a RKey 0x1fffbd VAddr 0x00ffff8c1a0000
 GID: 00:00:00:00:00:00:00:00:00:00:255:255:192:168:100:10
 remote address: LID 0000 QPN 0x0107 PSN 0x9c2d11 RKey 0x1fffbd VAddr 0x00ffff9a3c0000
 GID: 00:00:00:00:00:00:00:00:00:00:255:255:192:168:100:11
---------------------------------------------------------------------------------------
 #bytes     #iterations    BW peak[Gb/sec]    BW average[Gb/sec]   MsgRate[Mpps]
 65536      639123           0.00               111.70\t\t   0.213047
---------------------------------------------------------------------------------------
"""


def test_write_bw_average_in_gbits_from_perftests_table():
    assert parse.parse_write_bw(WRITE_BW_CLIENT) == 111.70
    # perftest may print a warning between the header and the row (seen in the field without -F).
    warned = WRITE_BW_CLIENT.replace(" 65536 ", "Conflicting CPU frequency values detected: 1500.000000 != 3300.016000. "
                                     "CPU Frequency is not max.\n 65536 ")
    assert parse.parse_write_bw(warned) == 111.70
    # Without --report_gbits perftest prints MB/sec (2**20 bytes).
    mebibytes = WRITE_BW_CLIENT.replace("[Gb/sec]", "[MB/sec]").replace("111.70", "1000.00")
    assert parse.parse_write_bw(mebibytes) == pytest.approx(8.388608)
    # A run that failed after the banner printed no table.
    failed = WRITE_BW_CLIENT.split(" #bytes")[0] + " Completion with error at client\n Failed status 12\n"
    assert parse.parse_write_bw(failed) is None
    assert parse.parse_write_bw(" #bytes     #iterations    BW peak[Gb/sec]    BW average[Gb/sec]   MsgRate[Mpps]\n") is None


def test_nmcli_device_states_in_terse_mode():
    text = "enP7s7:connected\nenp1s0f1np1:unmanaged\nbond0:unmanaged\ndocker0:connected (externally)\nweird\\:name:unavailable\n"
    assert parse.parse_nmcli_devices(text) == {
        "enP7s7": "connected", "enp1s0f1np1": "unmanaged", "bond0": "unmanaged",
        "docker0": "connected (externally)", "weird:name": "unavailable"}
