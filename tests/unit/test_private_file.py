"""spark_cluster/private_file.py and its files/install_private.sh, run for
real on temporary trees: a file that can hold a secret is created private,
replaces the old one whole, and leaves no staging behind."""

import grp
import os
import pwd
import stat
import subprocess
from pathlib import Path

import pytest

from spark_cluster.private_file import INSTALL_PRIVATE, is_private

OWNER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name


def stage_with(tmp_path, text):
    stage = tmp_path / "stage"
    stage.mkdir(mode=0o700)
    (stage / "upload").write_text(text)
    (stage / "upload").chmod(0o644)  # what SFTP leaves under a 022 umask
    return stage


def install(stage, dest, mode="600", env=None):
    return subprocess.run(["sh", str(INSTALL_PRIVATE), str(stage), str(dest), OWNER, GROUP, mode],
                          capture_output=True, text=True, timeout=10, env=env)


def mode_of(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_file_lands_private_and_the_stage_is_gone(tmp_path):
    stage, dest = stage_with(tmp_path, "VLLM_API_KEY=secret\n"), tmp_path / "serving.env"
    result = install(stage, dest)
    assert result.returncode == 0, result.stderr
    assert (dest.read_text(), mode_of(dest)) == ("VLLM_API_KEY=secret\n", 0o600)
    assert not stage.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["serving.env"]


def test_an_old_world_readable_file_is_replaced_whole_by_a_private_one(tmp_path):
    dest = tmp_path / "serving.env"
    dest.write_text("old\n")
    dest.chmod(0o644)
    assert install(stage_with(tmp_path, "new\n"), dest, mode="640").returncode == 0
    assert (dest.read_text(), mode_of(dest)) == ("new\n", 0o640)


def test_the_copy_is_private_before_its_mode_is_set(tmp_path):
    """A chmod stub records the new file's mode when chmod is called: the
    umask made it 0600 from its first byte, whatever the upload's mode."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    seen = tmp_path / "seen"
    (bin_dir / "chmod").write_text(f'#!/bin/sh\nstat -c %a "$2" > {seen}\nexec /bin/chmod "$@"\n')
    (bin_dir / "chmod").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    assert install(stage_with(tmp_path, "k\n"), tmp_path / "serving.env", env=env).returncode == 0
    assert seen.read_text().strip() == "600"


def test_a_failed_copy_leaves_the_old_file_and_no_stage(tmp_path):
    dest = tmp_path / "serving.env"
    dest.write_text("old\n")
    stage = tmp_path / "stage"
    stage.mkdir(mode=0o700)  # no upload in it
    result = install(stage, dest)
    assert result.returncode != 0
    assert dest.read_text() == "old\n" and not stage.exists()
    assert not (tmp_path / "serving.env.spark-cluster-new").exists()


@pytest.mark.parametrize("mode, private", [("600", True), ("0640", True), ("400", True), ("644", False),
                                           ("604", False), (None, False)])
def test_private_means_nothing_for_other_users(mode, private):
    assert is_private(mode) is private
