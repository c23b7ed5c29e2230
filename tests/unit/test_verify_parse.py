"""The verification suite's parsers, on text as the nodes print it."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "verify"))

from sparkverify import parse  # noqa: E402


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
     ("* soft memlock unlimited\n", False), ("# * - memlock unlimited\n", False), ("* hard memlock 65536\n", False)],
)
def test_limits_conf(text, ok):
    assert parse.limits_conf_memlock_unlimited(text) is ok


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
