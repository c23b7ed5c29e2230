"""The lab's accelerator: KVM where /dev/kvm works, TCG with the reason everywhere else."""

import errno
import os
from pathlib import Path

import pytest

from lab import accel, cli, qemu
from lab.accel import KvmProbe
from lab.errors import LabError
from lab.image import Image

IMAGE = Image(Path("/cache/abc"))
WORKSTATION = KvmProbe(exists=True, api_version=12, cpu_flags=frozenset({"fpu", "vmx", "sse2"}))
AMD = KvmProbe(exists=True, api_version=12, cpu_flags=frozenset({"svm"}))
NO_DEVICE = KvmProbe(exists=False)
NO_ACCESS = KvmProbe(exists=True, open_error="Permission denied", cpu_flags=frozenset({"vmx"}))
OLD_API = KvmProbe(exists=True, api_version=11, cpu_flags=frozenset({"vmx"}))
NO_NESTING = KvmProbe(exists=True, api_version=12, cpu_flags=frozenset({"hypervisor", "sse2"}))


@pytest.mark.parametrize("probe", [WORKSTATION, AMD])
def test_a_host_where_kvm_works_gets_kvm(probe):
    choice = accel.decide(None, probe)
    assert choice == accel.Choice("kvm", "/dev/kvm answers")
    assert choice.line() == "lab: accelerator kvm (/dev/kvm answers)"


@pytest.mark.parametrize("probe, why", [
    (NO_DEVICE, "/dev/kvm: missing"),
    (NO_ACCESS, "/dev/kvm: cannot open read-write: Permission denied; add yourself to the kvm group"),
    (OLD_API, "/dev/kvm: KVM_GET_API_VERSION answered 11, expected 12"),
    # This very host: /dev/kvm answers 12, yet qemu guests hang under KVM (lab-notes.md).
    (NO_NESTING, "/dev/kvm: answers, but the CPU shows no vmx/svm flag"),
])
def test_every_other_host_falls_back_to_tcg_saying_why(probe, why):
    choice = accel.decide("auto", probe)
    assert choice.accel == "tcg" and choice.reason.startswith(why)
    assert choice.line().startswith("lab: accelerator tcg (/dev/kvm: ")


def test_a_forced_choice_wins_and_says_what_the_probe_found():
    assert accel.decide("tcg", WORKSTATION, "--accel") == accel.Choice("tcg", "forced by --accel")
    forced = accel.decide("kvm", NO_NESTING, "SPARK_LAB_ACCEL")
    assert forced.accel == "kvm"
    assert forced.reason.startswith("forced by SPARK_LAB_ACCEL; probe said /dev/kvm: answers, but")
    assert accel.decide("KVM", WORKSTATION).reason == "forced by --accel"
    with pytest.raises(LabError, match=r"SPARK_LAB_ACCEL must be one of kvm, tcg, auto; got 'hvf'"):
        accel.decide("hvf", WORKSTATION, "SPARK_LAB_ACCEL")


def test_the_option_wins_over_the_environment_which_wins_over_the_probe():
    probed = []

    def probe():
        probed.append(1)
        return WORKSTATION

    assert accel.choose(None, {}, probe).accel == "kvm"
    assert accel.choose(None, {"SPARK_LAB_ACCEL": "tcg"}, probe) == accel.Choice("tcg", "forced by SPARK_LAB_ACCEL")
    assert accel.choose("auto", {"SPARK_LAB_ACCEL": "tcg"}, probe).accel == "kvm"
    assert accel.choose("tcg", {"SPARK_LAB_ACCEL": "kvm"}, probe).reason == "forced by --accel"
    assert accel.choose(None, {"SPARK_LAB_ACCEL": ""}, lambda: NO_DEVICE).accel == "tcg"
    assert len(probed) == 4


def test_the_probe_reads_what_the_host_has(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu vmx sse2\n\nprocessor\t: 1\nflags\t\t: fpu vmx sse2\n")
    assert accel.cpu_flags(cpuinfo) == {"fpu", "vmx", "sse2"}
    assert accel.cpu_flags(tmp_path / "absent") == frozenset()
    assert accel.probe_kvm(str(tmp_path / "no-kvm"), cpuinfo) == KvmProbe(exists=False)

    device = tmp_path / "kvm"
    device.write_text("")
    asked = []

    def ioctl(descriptor, request):
        asked.append(request)
        return 12

    monkeypatch.setattr(accel.fcntl, "ioctl", ioctl)
    found = accel.probe_kvm(str(device), cpuinfo)
    assert found == KvmProbe(exists=True, api_version=12, cpu_flags=frozenset({"fpu", "vmx", "sse2"}))
    assert asked == [0xAE00] and accel.decide(None, found).accel == "kvm"

    def refuse(path, flags):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)

    denied = accel.probe_kvm(str(device), cpuinfo, opener=refuse)
    assert denied.open_error == "Permission denied" and accel.decide(None, denied).accel == "tcg"


def test_the_probe_on_this_machine_is_quick_and_decides():
    import time

    started = time.monotonic()
    choice = accel.choose(None, {})
    assert time.monotonic() - started < 2.0
    assert choice.accel in ("kvm", "tcg") and choice.reason


def test_kvm_argv_runs_the_host_cpu_and_tcg_keeps_todays_settings():
    kvm = qemu.qemu_argv(1, 2, IMAGE, accel="kvm")
    tcg = qemu.qemu_argv(1, 2, IMAGE, accel="tcg")
    assert kvm[kvm.index("-accel") + 1] == "kvm" and kvm[kvm.index("-cpu") + 1] == "host"
    # Under TCG `-cpu host` aborts: qemu's default model, one host thread per vCPU.
    assert tcg[tcg.index("-accel") + 1] == "tcg,thread=multi" and "-cpu" not in tcg
    assert qemu.qemu_argv(1, 2, IMAGE) == tcg
    # Nothing else differs: the wiring is the same under both.
    assert [a for a in kvm if a not in ("kvm", "-cpu", "host")] == [a for a in tcg if a != "tcg,thread=multi"]
    with pytest.raises(ValueError, match="unknown accelerator"):
        qemu.qemu_argv(1, 2, IMAGE, accel="hvf")


def test_cli_takes_accel_on_up_and_rebuild():
    parser = cli.build_parser()
    assert parser.parse_args(["up", "--accel", "kvm"]).accel == "kvm"
    assert parser.parse_args(["up"]).accel is None
    assert parser.parse_args(["rebuild", "spark-1", "--accel", "tcg"]).accel == "tcg"
    with pytest.raises(SystemExit):
        parser.parse_args(["up", "--accel", "hvf"])
