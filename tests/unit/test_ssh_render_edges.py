"""roles/ssh/render.py keys_by_name on known_hosts blocks as a node may hold
them: a comment line first, a key with a trailing comment, a truncated line.
What it returns decides which host keys the ssh role keeps or replaces; each
case once let a wrong line through the tests (mutation testing,
docs/benchmarks.md)."""

from roles.ssh.render import keys_by_name


def test_comments_truncated_lines_and_trailing_comments():
    """A comment or a line without a key says nothing and does not end the
    block; a key line's own trailing comment is not part of the key."""
    block = [
        "# spark-cluster: cluster members",
        "spark-2,10.0.0.2 ssh-ed25519",
        "spark-2,10.0.0.2 ssh-ed25519 AAAAKEY2 root@spark-2",
        "   # an indented comment ssh-rsa AAAA",
        "spark-3,10.0.0.3 ssh-ed25519 AAAAKEY3",
    ]
    assert keys_by_name(block) == {"spark-2": ["ssh-ed25519 AAAAKEY2"], "spark-3": ["ssh-ed25519 AAAAKEY3"]}


def test_no_block_yet_is_no_keys():
    assert keys_by_name(None) == {} and keys_by_name([]) == {}
