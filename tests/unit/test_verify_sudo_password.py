"""The verify suite takes the sudo password from a prompt or a private file,
never from a command line (tests/verify/sparkverify/sudo_password.py)."""

import pytest

from sparkverify.errors import VerifyEnvironmentError
from sparkverify.inventory import NodeSpec
from sparkverify.remote import Node
from sparkverify.sudo_password import session_password


def password_file(tmp_path, text="s3cret\n", mode=0o600):
    path = tmp_path / "sudo"
    path.write_text(text)
    path.chmod(mode)
    return str(path)


def test_a_private_file_gives_its_first_line(tmp_path):
    assert session_password(password_file(tmp_path, "s3cret\nignored\n"), ask=False) == "s3cret"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_file_others_can_read_is_refused_with_the_fix(tmp_path, mode):
    path = password_file(tmp_path, mode=mode)
    with pytest.raises(VerifyEnvironmentError) as error:
        session_password(path, ask=False)
    assert str(error.value) == (f"--sudo-password-file {path!r} is mode {mode:04o}: others can read the password; "
                                f"chmod 600 {path}")


def test_an_empty_or_missing_file_is_refused(tmp_path):
    with pytest.raises(VerifyEnvironmentError, match="empty; write the password on its first line"):
        session_password(password_file(tmp_path, ""), ask=False)
    with pytest.raises(VerifyEnvironmentError, match="cannot be read"):
        session_password(str(tmp_path / "absent"), ask=False)


def test_asked_once_on_the_terminal():
    asked = []
    assert session_password(None, ask=True, prompt=lambda text: asked.append(text) or "typed") == "typed"
    assert asked == ["sudo password for the nodes: "]


def test_the_runs_password_wins_over_the_environment_and_the_inventory(monkeypatch, tmp_path):
    spec = NodeSpec("spark-1", {"_sudo_password": "from-inventory"})
    monkeypatch.setenv("SPARK_SUDO_PASSWORD", "from-env")
    assert Node(spec, tmp_path, "from-file").sudo_password() == "from-file"
    assert Node(spec, tmp_path).sudo_password() == "from-env"
    monkeypatch.delenv("SPARK_SUDO_PASSWORD")
    assert Node(spec, tmp_path).sudo_password() == "from-inventory"
