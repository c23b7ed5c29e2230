"""Which qemu accelerator the lab uses: KVM where /dev/kvm works, TCG everywhere else.

The probe is a handful of syscalls (well under a second) and the decision is a pure function
of what it found, so the choice is unit-tested without a /dev/kvm.

/dev/kvm answering is not enough: in a VM without nested virtualisation (the host this lab was
built on) /dev/kvm opens, KVM_GET_API_VERSION answers 12 and even runs a one-instruction guest,
yet a real qemu guest hangs under -enable-kvm. What tells them apart is the CPU flag the kernel
shows when it can really run guests: vmx (Intel) or svm (AMD) in /proc/cpuinfo.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import LabError

KVM = "kvm"
TCG = "tcg"
CHOICES = (KVM, TCG)
AUTO = "auto"
ENV = "SPARK_LAB_ACCEL"
KVM_DEVICE = "/dev/kvm"
KVM_GET_API_VERSION = 0xAE00  # _IO(KVMIO, 0x00)
KVM_API_VERSION = 12  # the only stable KVM API there has ever been
VIRTUALISATION_FLAGS = ("vmx", "svm")


@dataclass(frozen=True)
class KvmProbe:
    """What the host said about KVM; `problem` is None when it said nothing bad."""

    exists: bool
    open_error: str | None = None  # why open(O_RDWR) failed, None when it opened
    api_version: int | None = None  # KVM_GET_API_VERSION's answer, None when not asked or it failed
    cpu_flags: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Choice:
    accel: str
    reason: str

    def line(self) -> str:
        return f"lab: accelerator {self.accel} ({self.reason})"


def kvm_problem(probe: KvmProbe) -> str | None:
    """Why KVM cannot be used, in a few words; None when /dev/kvm answers as it should."""
    if not probe.exists:
        return f"{KVM_DEVICE}: missing, no KVM module or not exposed to this machine"
    if probe.open_error is not None:
        return (f"{KVM_DEVICE}: cannot open read-write: {probe.open_error}; "
                "add yourself to the kvm group or run as root")
    if probe.api_version != KVM_API_VERSION:
        return f"{KVM_DEVICE}: KVM_GET_API_VERSION answered {probe.api_version}, expected {KVM_API_VERSION}"
    if not probe.cpu_flags & set(VIRTUALISATION_FLAGS):
        return (f"{KVM_DEVICE}: answers, but the CPU shows no vmx/svm flag: "
                "no nested virtualisation, KVM guests hang here")
    return None


def decide(requested: str | None, probe: KvmProbe, source: str = "--accel") -> Choice:
    """The accelerator for `requested` (kvm, tcg, auto or None = auto) on a host that probed as `probe`.

    A forced choice is kept even against the probe (the user may know better), but says what
    the probe found so a hang under a forced kvm is not a mystery.
    """
    requested = (requested or AUTO).strip().lower()
    if requested not in CHOICES + (AUTO,):
        raise LabError(f"{source} must be one of kvm, tcg, auto; got {requested!r}")
    problem = kvm_problem(probe)
    if requested == TCG:
        return Choice(TCG, f"forced by {source}")
    if requested == KVM:
        return Choice(KVM, f"forced by {source}" + (f"; probe said {problem}" if problem else ""))
    if problem is None:
        return Choice(KVM, f"{KVM_DEVICE} answers")
    return Choice(TCG, problem)


def probe_kvm(device: str = KVM_DEVICE, cpuinfo: Path = Path("/proc/cpuinfo"), opener=os.open) -> KvmProbe:
    """Opens the device and asks its API version: a few syscalls, no guest is started."""
    if not os.path.exists(device):
        return KvmProbe(exists=False)
    flags = cpu_flags(cpuinfo)
    try:
        descriptor = opener(device, os.O_RDWR | os.O_CLOEXEC)
    except OSError as error:
        return KvmProbe(exists=True, open_error=error.strerror or str(error), cpu_flags=flags)
    try:
        version = fcntl.ioctl(descriptor, KVM_GET_API_VERSION)
    except OSError:
        version = None
    finally:
        os.close(descriptor)
    return KvmProbe(exists=True, api_version=version, cpu_flags=flags)


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The first CPU's flags (every core shows the same virtualisation flags)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def choose(requested: str | None = None, env: dict | None = None, probe=None) -> Choice:
    """--accel wins over SPARK_LAB_ACCEL; neither (or auto) decides by the probe of /dev/kvm."""
    env = os.environ if env is None else env
    found = (probe or probe_kvm)()
    if requested:
        return decide(requested, found, "--accel")
    return decide(env.get(ENV) or None, found, ENV)


def qemu_options(accel: str) -> list[str]:
    """The accelerator's qemu options: KVM runs the host's CPU model; TCG keeps qemu's default
    model (`-cpu host` aborts under TCG) and one host thread per vCPU."""
    if accel == KVM:
        return ["-accel", "kvm", "-cpu", "host"]
    if accel == TCG:
        return ["-accel", "tcg,thread=multi"]
    raise ValueError(f"unknown accelerator {accel!r}: expected one of {CHOICES}")
