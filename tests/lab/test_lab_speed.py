"""The lab's accelerator on a real host: the VMs run under what the probe chose, `lab up` says
which and why, and `lab status` shows it. Needs the running 2-node lab (the lab2 fixture)."""

from pathlib import Path

import pytest
from labsupport import lab

from lab import accel, nodes

pytestmark = pytest.mark.lab


def qemu_accel(index: int) -> tuple[str, str | None]:
    """The -accel and -cpu values of node `index`'s running qemu process."""
    pid = nodes.running_pid(index)
    assert pid is not None, f"spark-{index} is not running"
    argv = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")]
    cpu = argv[argv.index("-cpu") + 1] if "-cpu" in argv else None
    return argv[argv.index("-accel") + 1], cpu


def test_the_vms_run_under_the_accelerator_the_lab_printed_and_recorded(lab2):
    again = lab("up", "--nodes", "2", timeout=600).stdout  # a no-op on the running lab
    first = again.splitlines()[0]
    assert first.startswith("lab: accelerator "), again
    chosen = first.split()[2]
    assert chosen in accel.CHOICES
    # Where nothing forces it, the lab's choice is this host's probe's.
    expected = accel.choose()
    assert first.startswith(f"lab: accelerator {expected.accel} ({expected.reason}"), (first, expected)

    shown = lab("status", timeout=120).stdout
    assert f"accelerator: {chosen} (" in shown, shown
    for index in (1, 2):
        assert qemu_accel(index) == (("kvm", "host") if chosen == "kvm" else ("tcg,thread=multi", None))
