"""spark_cluster/file_state: the batched path check runs for real against a
temporary tree, and a role's Snapshot emits pyinfra's operation only where a
path differs (built offline: nothing connects anywhere)."""

import getpass
import grp
import hashlib
import os
import subprocess
from io import StringIO

from collect_ops import build_operations

from spark_cluster.file_state import PATH_STATE, UNCHANGED, Snapshot, parse_path_states, path_states_command

USER = getpass.getuser()
GROUP = grp.getgrgid(os.getgid()).gr_name


def run_states(paths, lines=()):
    command = path_states_command(paths, lines)
    result = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=10, check=True)
    return result.stdout.splitlines()


def test_every_kind_of_path_in_one_command(tmp_path):
    (tmp_path / "dir").mkdir(mode=0o750)
    os.chmod(tmp_path / "dir", 0o750)
    (tmp_path / "file").write_text("hello\n")
    os.chmod(tmp_path / "file", 0o600)
    (tmp_path / "link").symlink_to(tmp_path / "file")
    paths = [str(tmp_path / name) for name in ("dir", "file", "link", "absent", "with space")]
    (tmp_path / "with space").write_text("")

    states = parse_path_states(paths, run_states(paths))

    assert states[paths[0]] == {"kind": "directory", "mode": 750, "user": USER, "group": GROUP, "sha1": None}
    assert states[paths[1]] == {"kind": "file", "mode": 600, "user": USER, "group": GROUP,
                                "sha1": hashlib.sha1(b"hello\n").hexdigest()}
    assert states[paths[2]]["kind"] == "link", "a symlink is never taken for the file it points to"
    assert states[paths[3]] is None
    assert states[paths[4]]["sha1"] == hashlib.sha1(b"").hexdigest()


def test_whole_line_checks_follow_the_paths(tmp_path):
    keys = tmp_path / "authorized_keys"
    keys.write_text("ssh-ed25519 AAAA other\nssh-ed25519 AAAA cluster\n")
    lines = [(str(keys), "ssh-ed25519 AAAA cluster"), (str(keys), "ssh-ed25519 AAAA"),
             (str(tmp_path / "absent"), "x"), (str(keys), "-e quoted 'line'")]
    output = run_states([str(keys)], lines)
    assert output[1:] == ["has", "lacks", "lacks", "lacks"], "whole lines only, and no option injection"


def test_line_checks_without_paths_are_answered_in_order(tmp_path):
    keys = tmp_path / "authorized_keys"
    keys.write_text("ssh-ed25519 AAAA cluster\n")
    assert run_states([], [(str(keys), "ssh-ed25519 AAAA cluster"), (str(keys), "other")]) == ["has", "lacks"]


def test_paths_are_taken_literally(tmp_path):
    names = ["it's", "$HOME", "*", "two\nlines"]
    for name in names:
        (tmp_path / name).mkdir()
    paths = [str(tmp_path / name) for name in names]
    assert [state["kind"] for state in parse_path_states(paths, run_states(paths)).values()] == ["directory"] * 4


def test_the_shipped_script_runs_on_its_own_and_refuses_a_bad_count(tmp_path):
    (tmp_path / "file").write_text("a line\n")
    file = str(tmp_path / "file")
    result = subprocess.run(["sh", str(PATH_STATE), "2", file, str(tmp_path / "absent"), file, "a line"],
                            capture_output=True, text=True, timeout=10)
    assert (result.returncode, result.stdout.splitlines()) == (0, run_states([file, str(tmp_path / "absent")],
                                                                             [(file, "a line")]))
    for args in (["x", file], [], ["2", file], ["1", file, file]):
        result = subprocess.run(["sh", str(PATH_STATE), *args], capture_output=True, text=True, timeout=10)
        assert (result.returncode, result.stdout) == (2, ""), args
        assert result.stderr.startswith("usage: path_state.sh COUNT"), args


def test_short_output_never_reads_as_in_place():
    states = parse_path_states(["/a", "/b"], ["file 644 root root abc"])
    assert states["/b"]["kind"] == "other"


def snapshot_ops(remote_files, body):
    """Operations `body(snapshot)` emits on a node holding `remote_files` ({path: (text, mode)})."""
    def apply():
        body(Snapshot(["/etc/a.conf", "/etc/b.conf", "/etc/d"]))
    return [(name, commands) for name, commands, _ in build_operations(apply, {}, {}, remote_files)]


def test_put_is_emitted_only_for_a_differing_file():
    files = {"/etc/a.conf": ("same\n", 644), "/etc/b.conf": ("old\n", 644)}

    def body(paths):
        assert paths.put(name="a", src=StringIO("same\n"), dest="/etc/a.conf",
                         user="root", group="root", mode="644") is UNCHANGED
        paths.put(name="b", src=StringIO("new\n"), dest="/etc/b.conf", user="root", group="root", mode="644")

    ops = snapshot_ops(files, body)
    assert [name for name, _ in ops] == ["b"]
    assert any("chmod 644 /etc/b.conf" in command for command in ops[0][1])


def test_a_wrong_mode_alone_is_a_difference():
    def body(paths):
        paths.put(name="a", src=StringIO("same\n"), dest="/etc/a.conf", user="root", group="root", mode="600")

    assert [name for name, _ in snapshot_ops({"/etc/a.conf": ("same\n", 644)}, body)] == ["a"]


def test_perms_after_a_writer_is_checked_only_if_the_writer_changed():
    files = {"/etc/a.conf": ("x\n", 644)}

    def body(paths):
        writer = paths.put(name="writer", src=StringIO("y\n"), dest="/etc/b.conf", user="root", group="root")
        paths.perms(name="perms", path="/etc/a.conf", user="root", group="root", mode="644", after=[writer])
        assert paths.perms(name="never", path="/etc/a.conf", user="root", group="root", mode="644") is UNCHANGED

    entries = build_operations(lambda: body(Snapshot(["/etc/a.conf", "/etc/b.conf"])), {}, {}, files)
    perms = next(entry for entry in entries if entry[0] == "perms")
    assert perms[1] == [] and perms[2], "in place now: re-checked only behind the writer's _if"
    assert "never" not in [entry[0] for entry in entries]


def test_directory_and_absent_follow_the_snapshot():
    files = {"/etc/d/inside": ("", 644)}

    def body(paths):
        assert paths.directory(name="d", path="/etc/d", user="root", group="root", mode="755") is UNCHANGED
        assert paths.absent(name="gone", path="/etc/a.conf") is UNCHANGED
        assert not UNCHANGED.did_change() and UNCHANGED.did_not_change()

    assert snapshot_ops(files, body) == []
