"""The base image: a Debian trixie tree built by mmdebstrap, cached by a hash of its recipe."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from . import state
from .errors import LabError
from .tools import require

# Bump when build() changes in a way the recipe files do not show.
# 2: four QSFP netdevs (two PCIe halves per port), NetworkManager on the QSFP ports.
RECIPE_VERSION = 2
SUITE = "trixie"
DISK_SIZE = "12G"
# A build step that prints nothing for this long still gets a line: the build is not hung.
PROGRESS_EVERY_S = 20.0
RECIPE_DIR = Path(__file__).resolve().parent / "recipe"
PACKAGES = (
    "systemd", "systemd-sysv", "udev", "dbus", "openssh-server", "openssh-client",
    "linux-image-amd64", "initramfs-tools", "kmod", "iproute2", "netplan.io",
    "systemd-resolved", "libnss-myhostname", "linux-sysctl-defaults", "rdma-core", "ibverbs-utils", "perftest",
    "sudo", "python3", "iputils-ping", "procps", "docker.io", "docker-cli", "ca-certificates", "rsync",
    # DGX OS leaves the QSFP ports to NetworkManager's automatic DHCP profiles.
    "network-manager",
)


@dataclass(frozen=True)
class Image:
    directory: Path

    @property
    def disk(self) -> Path:
        return self.directory / "base.qcow2"

    @property
    def kernel(self) -> Path:
        return self.directory / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.directory / "initrd"

    def complete(self) -> bool:
        return all(p.is_file() for p in (self.disk, self.kernel, self.initrd))


def recipe_files(recipe_dir: Path = RECIPE_DIR) -> list[Path]:
    return sorted(p for p in recipe_dir.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def recipe_hash(public_key: str, packages=PACKAGES, recipe_dir: Path = RECIPE_DIR,
                version: int = RECIPE_VERSION) -> str:
    """Changes exactly when what goes into the image changes."""
    digest = hashlib.sha256()
    digest.update(f"version={version}\nsuite={SUITE}\ndisk={DISK_SIZE}\n".encode())
    digest.update(("packages=" + ",".join(sorted(packages)) + "\n").encode())
    digest.update(("key=" + public_key.strip() + "\n").encode())
    for path in recipe_files(recipe_dir):
        digest.update(f"file={path.relative_to(recipe_dir).as_posix()}\n".encode())
        digest.update(path.read_bytes())
        digest.update(b"\n")
    return digest.hexdigest()[:16]


def ensure_key() -> Path:
    """The lab's own ed25519 key, generated once."""
    key = state.ssh_key_path()
    if not key.exists():
        keygen = require("ssh-keygen")
        key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-C", "spark-lab", "-f", str(key)],
                       check=True)
    key.chmod(0o600)
    return key


def current_image() -> Image:
    public_key = Path(str(ensure_key()) + ".pub").read_text()
    return Image(state.image_cache_dir() / recipe_hash(public_key))


def ensure_image(force: bool = False, log=print) -> Image:
    """The cached image for the current recipe, built first if it is missing."""
    image = current_image()
    if image.complete() and not force:
        return image
    for program in ("mmdebstrap", "mkfs.ext4", "qemu-img"):
        require(program)
    if os.geteuid() != 0:
        raise LabError("building the image needs root (mmdebstrap root mode, mkfs.ext4 -d keeps "
                       "ownership): run `sudo python -m lab build-image` once")
    build(image, log)
    return image


def build(image: Image, log=print) -> None:
    progress = Progress(log)
    work = image.directory.with_name(image.directory.name + f".build-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    tree = work / "tree"
    # Beside the image, not in `work`: it outlives a failed build.
    bootstrap_log = image.directory.with_name(image.directory.name + ".mmdebstrap.log")
    try:
        log(f"building image {image.directory.name} (Debian {SUITE}, a few minutes; a line at least "
            f"every {PROGRESS_EVERY_S:.0f}s, mmdebstrap's output in {bootstrap_log})...")
        _bootstrap(tree, progress, bootstrap_log)
        progress.step("finishing the tree (host keys, machine-id, kernel and initrd)")
        _finalize_tree(tree)
        _copy_boot_files(tree, work)
        raw = work / "disk.raw"
        progress.run([require("mkfs.ext4"), "-q", "-F", "-L", "spark-root", "-d", str(tree), str(raw),
                      DISK_SIZE], "mkfs.ext4")
        shutil.rmtree(tree)
        progress.run([require("qemu-img"), "convert", "-O", "qcow2", str(raw), str(work / "base.qcow2")],
                     "qemu-img convert")
        raw.unlink()
        if image.directory.exists():
            shutil.rmtree(image.directory)
        work.rename(image.directory)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"image ready in {progress.elapsed():.0f}s: {image.directory}")


def _bootstrap(tree: Path, progress: "Progress", log_file: Path) -> None:
    public_key = Path(str(state.ssh_key_path()) + ".pub")
    hook = f'sh {RECIPE_DIR / "customize.sh"} "$1" {RECIPE_DIR / "files"} {public_key}'
    # Not --quiet: its "I: <stage>..." lines are the build's progress.
    progress.run(
        [require("mmdebstrap"), "--mode=root", "--variant=minbase",
         "--include=" + ",".join(PACKAGES), "--customize-hook=" + hook, SUITE, str(tree)],
        "mmdebstrap",
        log_file=log_file,
    )


def stage_of(line: str) -> str | None:
    """The stage an output line announces: mmdebstrap's "I: ..." info lines, without the dots."""
    line = line.strip()
    if not line.startswith("I: "):
        return None
    stage = line[3:].rstrip(".").strip()
    return stage[:117] + "..." if len(stage) > 120 else stage


class Progress:
    """The build's progress: a line per step and stage, and one every `every` seconds while a
    step runs, so a build that takes minutes never looks hung."""

    def __init__(self, log=print, every: float = PROGRESS_EVERY_S, clock=time.monotonic):
        self.log, self.every, self.clock = log, every, clock
        self.started = clock()

    def elapsed(self) -> float:
        return self.clock() - self.started

    def step(self, what: str) -> None:
        self.log(f"image build: {self.elapsed():.0f}s, {what}")

    def run(self, argv: list[str], what: str, log_file: Path | None = None) -> None:
        """Runs one step, its output (stdout and stderr) kept in `log_file` when given."""
        self.step(what)
        tail: deque[str] = deque(maxlen=20)
        current = {"stage": "starting"}
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, errors="replace")

        def pump():
            sink = open(log_file, "w") if log_file else None
            try:
                for line in process.stdout:
                    if sink:
                        sink.write(line)
                        sink.flush()
                    tail.append(line.rstrip("\n"))
                    stage = stage_of(line)
                    if stage:
                        current["stage"] = stage
                        self.log(f"image build: {self.elapsed():.0f}s, {what}: {stage}")
            finally:
                if sink:
                    sink.close()

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            while True:
                try:
                    returncode = process.wait(timeout=self.every)
                    break
                except subprocess.TimeoutExpired:
                    self.log(f"image build: {self.elapsed():.0f}s, {what}: still {current['stage']}")
        except BaseException:
            # Interrupted (Ctrl-C): the step must not run on behind the user's back.
            process.kill()
            process.wait()
            raise
        finally:
            reader.join()
        if returncode != 0:
            print("\n".join(line for line in tail if line.strip()), file=sys.stderr)
            raise LabError(f"image build: {what} failed (exit {returncode})"
                           + (f"; its whole output is in {log_file}" if log_file else ""))


def _finalize_tree(tree: Path) -> None:
    """What must hold after mmdebstrap's own cleanup: per-node identity is made at first boot."""
    (tree / "etc/hostname").unlink(missing_ok=True)
    for key in (tree / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (tree / "etc/machine-id").write_text("")
    (tree / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    resolv = tree / "etc/resolv.conf"
    resolv.unlink(missing_ok=True)
    resolv.symlink_to("../run/systemd/resolve/stub-resolv.conf")


def _copy_boot_files(tree: Path, work: Path) -> None:
    kernels = sorted((tree / "boot").glob("vmlinuz-*"))
    initrds = sorted((tree / "boot").glob("initrd.img-*"))
    if not kernels or not initrds:
        raise LabError(f"image build: no kernel or initrd in {tree / 'boot'}")
    shutil.copyfile(kernels[-1], work / "vmlinuz")
    shutil.copyfile(initrds[-1], work / "initrd")
