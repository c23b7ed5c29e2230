"""The image cache key: stable for the same recipe, new for any change to it; the build's progress."""

import shutil
import sys

import pytest

from lab import cx7, image
from lab.errors import LabError

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample spark-lab"


def copy_recipe(tmp_path):
    target = tmp_path / "recipe"
    shutil.copytree(image.RECIPE_DIR, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def test_hash_is_stable_for_the_same_recipe(tmp_path):
    recipe = copy_recipe(tmp_path)
    first = image.recipe_hash(KEY, recipe_dir=recipe)
    assert first == image.recipe_hash(KEY, recipe_dir=recipe)
    assert first == image.recipe_hash(KEY, recipe_dir=image.RECIPE_DIR)
    # Package order is not part of the recipe's meaning.
    assert first == image.recipe_hash(KEY, packages=tuple(reversed(image.PACKAGES)), recipe_dir=recipe)


def test_hash_changes_with_packages_files_key_and_version(tmp_path):
    recipe = copy_recipe(tmp_path)
    base = image.recipe_hash(KEY, recipe_dir=recipe)
    assert image.recipe_hash(KEY, packages=image.PACKAGES + ("ethtool",), recipe_dir=recipe) != base
    assert image.recipe_hash(KEY + "x", recipe_dir=recipe) != base
    assert image.recipe_hash(KEY, recipe_dir=recipe, version=image.RECIPE_VERSION + 1) != base

    script = recipe / "customize.sh"
    script.write_text(script.read_text() + "\n# changed\n")
    changed_script = image.recipe_hash(KEY, recipe_dir=recipe)
    assert changed_script != base

    (recipe / "files" / "etc" / "new-file").write_text("x\n")
    assert image.recipe_hash(KEY, recipe_dir=recipe) not in (base, changed_script)


def test_recipe_keeps_what_makes_a_node_look_like_a_fresh_spark():
    files = image.RECIPE_DIR / "files"
    links = {p.name: p.read_text() for p in (files / "etc/systemd/network").glob("*.link")}
    assert any("Path=pci-0000:00:03.0" in t and "Name=enP7s7" in t for t in links.values())
    for lane in cx7.LANES:
        assert sum(f"Path=pci-0000:00:{lane.slot:02x}.0" in t and f"Name={lane.netdev}\n" in t
                   for t in links.values()) == 1, lane
    assert len(links) == 1 + len(cx7.LANES)
    netplan = "".join(p.read_text() for p in (files / "etc/netplan").glob("*.yaml"))
    assert "enP7s7" in netplan and "enp1s0f" not in netplan and "enP2p1s0f" not in netplan
    # NetworkManager owns the QSFP ports (installed, enabled), never the management NIC.
    assert "network-manager" in image.PACKAGES
    nm_conf = "".join(p.read_text() for p in (files / "etc/NetworkManager/conf.d").glob("*.conf"))
    assert "unmanaged-devices+=interface-name:enP7s7\n" in nm_conf and "enp1s0f" not in nm_conf
    enabled = (image.RECIPE_DIR / "customize.sh").read_text().split("systemctl enable", 1)[1].split("\n", 1)[0]
    assert "NetworkManager" in enabled and "systemd-networkd" in enabled
    assert "nvidia-drm" in (files / "etc/modprobe.d/zz-nvidia-drm-override.conf").read_text()
    assert not list((files / "etc/ssh").glob("ssh_host_*"))
    script = (image.RECIPE_DIR / "customize.sh").read_text()
    assert "NOPASSWD" not in script and "docker" not in script.split("useradd", 1)[1].split("\n", 1)[0]


def test_image_paths_live_under_the_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("SPARK_LAB_CACHE", str(tmp_path))
    monkeypatch.setattr(image, "ensure_key", lambda: tmp_path / "key")
    (tmp_path / "key.pub").write_text(KEY)
    found = image.current_image()
    assert found.directory.parent == tmp_path
    assert found.disk.name == "base.qcow2" and not found.complete()


SLOW_STEP = """
import sys, time
print("I: running apt-get update...", flush=True)
time.sleep(0.5)
print("Get:1 http://deb.debian.org trixie InRelease", flush=True)
print("I: installing remaining packages inside the chroot...", flush=True)
time.sleep(1.2)
print("I: success in 1.7 seconds", flush=True)
sys.exit(int(sys.argv[1]))
"""


def test_a_slow_step_prints_its_stages_and_a_line_while_it_is_quiet(tmp_path):
    lines = []
    progress = image.Progress(lines.append, every=0.3)
    log_file = tmp_path / "step.log"
    progress.run([sys.executable, "-c", SLOW_STEP, "0"], "mmdebstrap", log_file=log_file)
    assert lines[0] == "image build: 0s, mmdebstrap"
    stages = [line.split(", ", 1)[1] for line in lines if "still" not in line]
    assert stages == ["mmdebstrap", "mmdebstrap: running apt-get update",
                      "mmdebstrap: installing remaining packages inside the chroot",
                      "mmdebstrap: success in 1.7 seconds"]
    # Quiet stretches (0.5 s, 1.2 s) still get lines every 0.3 s, naming the stage they are in.
    quiet = [line for line in lines if "still" in line]
    assert len(quiet) >= 3
    assert quiet[-1].endswith("mmdebstrap: still installing remaining packages inside the chroot")
    assert all(line.startswith("image build: ") and line.split()[2].endswith("s,") for line in lines)
    assert "Get:1 http://deb.debian.org trixie InRelease\n" in log_file.read_text()


def test_a_failed_step_shows_its_output_and_names_the_log(tmp_path, capsys):
    log_file = tmp_path / "step.log"
    expected = rf"image build: mmdebstrap failed \(exit 3\); its whole output is in {log_file}"
    with pytest.raises(LabError, match=expected):
        image.Progress(lambda line: None, every=5).run([sys.executable, "-c", SLOW_STEP, "3"], "mmdebstrap",
                                                       log_file=log_file)
    assert "Get:1 http://deb.debian.org trixie InRelease" in capsys.readouterr().err


def test_stage_of_reads_mmdebstraps_info_lines_only():
    assert image.stage_of("I: extracting archives...\n") == "extracting archives"
    assert image.stage_of("W: something odd") is None
    assert image.stage_of("update-initramfs: Generating /boot/initrd.img-6.12") is None
    assert len(image.stage_of("I: " + "x" * 500)) == 120
