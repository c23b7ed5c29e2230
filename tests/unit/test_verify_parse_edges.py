"""The verification parsers at the edges of their input: lines the happy-path
samples in test_verify_parse.py do not have, where a parser that reads one
field too few or too many would make a check pass (or fail) on a node whose
real state is the opposite. Found by mutation testing (docs/benchmarks.md)."""

import base64
import hashlib
import hmac

import pytest

from sparkverify import parse


# --- env files ----------------------------------------------------------------

def test_env_file_keeps_values_that_hold_an_equals_sign():
    """A value may itself contain `=` (engine options, URLs with a query): only
    the first `=` separates the name."""
    assert parse.parse_env_file("VLLM_ARGS=--max-model-len=8192\nURL=http://h/?a=b\n") == {
        "VLLM_ARGS": "--max-model-len=8192", "URL": "http://h/?a=b"}


def test_env_file_skips_a_commented_out_assignment():
    """`# NCCL_IB_HCA=...` is a comment, not a variable named `# NCCL_IB_HCA`."""
    assert parse.parse_env_file("# NCCL_IB_HCA=rocep1s0f0\nNCCL_IB_GID_INDEX=3\n") == {"NCCL_IB_GID_INDEX": "3"}


@pytest.mark.parametrize("line, value", [
    ("A='x\"", "'x\""),   # the quotes do not match: nothing is stripped
    ("A=\"x'", "\"x'"),
    ("A='", "'"),         # a lone quote is the value
    ("A=''", ""),         # an empty quoted value is empty
])
def test_env_file_strips_only_a_matching_pair_of_quotes(line, value):
    """Only one pair of matching quotes around a value is syntax."""
    assert parse.parse_env_file(line) == {"A": value}


# --- NCCL_IB_HCA, rlimits, /proc limits ------------------------------------------

def test_hca_list_skips_an_empty_item_and_reads_on():
    """`a,,b` (a doubled comma) still names both devices, as NCCL reads it."""
    assert parse.parse_hca_list("rocep1s0f0,,rocep1s0f1:1") == [("rocep1s0f0", 1), ("rocep1s0f1", 1)]


@pytest.mark.parametrize("text", ["(-1,)", "[-1, -1]", "(-1, -1, -1)"])
def test_rlimit_wants_exactly_a_pair_in_a_tuple(text):
    """getrlimit prints a 2-tuple; anything else is noise, not an unlimited limit."""
    with pytest.raises(ValueError):
        parse.parse_rlimit(text)


LIMITS = (
    "Limit                     Soft Limit           Hard Limit           Units     \n"
    "Max locked memory         65536                unlimited            bytes     \n"
    "Max nice priority         0                    0                    \n"
)


def test_proc_limit_reads_soft_and_hard_apart():
    """A soft limit below an unlimited hard one is what RDMA trips over: the
    two columns must not be confused."""
    assert parse.proc_limit(LIMITS) == ("65536", "unlimited")


def test_proc_limit_of_a_limit_without_units():
    """Some limits have no Units column: soft and hard are still read."""
    assert parse.proc_limit(LIMITS, "Max nice priority") == ("0", "0")


def test_proc_limit_of_a_truncated_line_is_none():
    assert parse.proc_limit("Max locked memory         65536\n") is None


# --- limits.conf --------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "*  -  memlock  unlimited  oops\n",                           # five fields: pam_limits skips the line
    "*  -  core  unlimited\n",                                    # another item
    "*  -  nofile  unlimited\n",                                  # another item, sorting after memlock
    "*  soft  memlock  unlimited\n*  *  memlock  unlimited\n",   # an unknown type sets nothing
])
def test_limits_conf_lines_that_do_not_make_memlock_unlimited(text):
    assert parse.limits_conf_memlock_unlimited(text, "spark") is False


def test_limits_conf_reads_past_lines_about_other_things():
    """The memlock line need not come first: other items, other users and
    malformed lines before it are skipped, not the end of the file."""
    text = "*  -  nofile  65536\nroot  -  memlock  unlimited\n*  -  memlock\n*  -  memlock  unlimited\n"
    assert parse.limits_conf_memlock_unlimited(text, "spark") is True


# --- systemd unit files -------------------------------------------------------------

def test_unit_file_continuation_without_a_space_before_the_backslash():
    """`a\\` + newline + `b` joins as `a b`: the backslash alone is removed."""
    text = "[Service]\nExecStart=/usr/bin/docker\\\n    run --rm\n"
    assert parse.parse_unit_file(text)["Service"]["ExecStart"] == "/usr/bin/docker run --rm"


def test_unit_file_value_ending_in_a_bracket_is_an_assignment():
    """Only a whole `[...]` line opens a section: a value that ends in `]`
    (a JSON list, an IPv6 endpoint) stays in its section."""
    text = "[Service]\nEnvironment=HOSTS=[a,b]\nLimitMEMLOCK=infinity\n"
    assert parse.parse_unit_file(text) == {"Service": {"Environment": "HOSTS=[a,b]", "LimitMEMLOCK": "infinity"}}


# --- mountinfo --------------------------------------------------------------------

def test_mountinfo_reads_on_past_a_line_it_cannot_parse():
    """A malformed line (no ` - ` separator, or too few fields) is skipped,
    not the end of the table: the cache mount after it is still found."""
    text = ("garbage without a separator\n"
            "36 35 98:0 /x /five-fields - ext4 /dev/root rw\n"
            "36 35 98:0 / /no-source rw - ext4\n"
            "37 35 98:0 /mnt1 /root/.cache/vllm rw,noatime - ext4 /dev/root\n")
    assert parse.parse_mountinfo(text) == {
        "/root/.cache/vllm": {"root": "/mnt1", "options": "rw,noatime", "fstype": "ext4", "source": "/dev/root"}}


# --- OpenSSH keys and known_hosts ---------------------------------------------------

def test_pubkey_without_a_comment_and_a_bare_type():
    """A key line needs its type and blob; a comment is optional."""
    assert parse.parse_pubkey("ssh-ed25519 AAAAC3Nz") == ("ssh-ed25519", "AAAAC3Nz")
    with pytest.raises(ValueError):
        parse.parse_pubkey("ssh-ed25519")


def test_pubkey_message_quotes_only_the_start_of_the_line():
    """A pasted multi-kilobyte blob is not echoed whole: 40 characters say which line it was."""
    blob = "A" * 100
    with pytest.raises(ValueError) as error:
        parse.parse_pubkey(blob)
    assert str(error.value) == f"not an OpenSSH public key: {blob[:40]!r}"


def _hashed(name: str, salt: bytes = b"0123456789abcdef0123") -> str:
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


def test_known_hosts_lines_with_a_comment_and_a_broken_hashed_name():
    """A host key line may end in a comment (even one starting with `@` or
    `#`); blank, comment, marker, other-type and truncated lines before it are
    skipped, not the end of the file; a hashed name whose salt is not base64
    matches nothing instead of failing the whole check."""
    text = "\n".join([
        "|1|not*base64|AAAA ssh-ed25519 BROKEN",
        "",
        "# spark-2 ssh-ed25519 COMMENTED",
        "@cert-authority spark-2 ssh-ed25519 CAKEY",
        "spark-2 ssh-rsa RSAKEY",
        "spark-2 ecdsa-sha2-nistp256 ECDSAKEY",
        "spark-2 ssh-ed25519",
        "spark-2,10.0.0.2 ssh-ed25519 KEYTWO root@spark-2",
        f"{_hashed('spark-2')} ssh-ed25519 HASHED @spark-2",
        "spark-2 ssh-ed25519 TAGGED #laptop",
    ])
    assert parse.known_host_keys(text, "spark-2", "ssh-ed25519") == ["KEYTWO", "HASHED", "TAGGED"]
    assert parse.known_host_keys(text, "10.0.0.2", "ssh-ed25519") == ["KEYTWO"]


def test_a_truncated_revoked_line_revokes_nothing():
    """`@revoked <pattern> <type>` without a key (a half-written line) names
    no key: it is skipped, not an IndexError in the check."""
    assert parse.revoked_keys("@revoked * ssh-ed25519\n@revoked spark-1 ssh-ed25519 OLD\n", "ssh-ed25519") == {
        "OLD": "spark-1"}


def test_a_revoked_line_with_a_comment_still_revokes():
    """Like any known_hosts line, `@revoked` may carry a trailing comment."""
    assert parse.revoked_keys("@revoked spark-2 ssh-ed25519 OLD leaked-2026\n", "ssh-ed25519") == {"OLD": "spark-2"}


def test_gpu_memory_reads_past_a_line_that_is_not_a_number():
    """nvidia-smi prints "[N/A]" for GB10's unified memory; a GPU after it is still read."""
    assert parse.parse_gpu_total_mib("[N/A]\n122880\n") == [122880.0]


# --- ping ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, verdict", [
    ("1 packets transmitted, 1 received, 0% packet loss", "ok"),          # ping -c 1
    ("1000 packets transmitted, 1000 received, 0% packet loss", "ok"),    # a long soak
    ("1000 packets transmitted, 999 received, 0.1% packet loss", "lossy"),
    ("0 packets transmitted, 0 received", "no_reply"),                    # nothing sent is no proof
])
def test_ping_verdict_at_the_counts_edges(text, verdict):
    assert parse.parse_ping(text) == verdict
