"""The lab's CX-7: which ports have a cable, how a start pulls the others over QMP, and
that the cabling choice survives restarts and rebuilds (lab.json); lab.up's accelerator and
boot budget, with the same offline lab."""

import json
import socket
import threading
from pathlib import Path

import pytest

from lab import cli, cx7, lab, nodes, qmp, state
from lab.errors import LabError
from lab.image import Image
from lab.qemu import node_files

IMAGE = Image(Path("/cache/abc"))


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("SPARK_LAB_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("SPARK_LAB_CACHE", str(tmp_path / "cache"))
    (tmp_path / "state").mkdir()


def test_port1_pulls_both_halves_of_port0_and_both_pulls_nothing():
    assert cx7.unplugged("port1") == ["qsfp0", "qsfp1"]
    assert [cx7.LANES[int(n[-1])].netdev for n in cx7.unplugged("port1")] == ["enp1s0f0np0", "enP2p1s0f0np0"]
    assert cx7.unplugged("both") == []
    assert [cx7.cabled(lane, "port1") for lane in range(4)] == [False, False, True, True]
    with pytest.raises(ValueError):
        cx7.cabled(0, "port0")


def test_every_lane_has_a_spark_name_and_rdma_device_of_its_half():
    for lane in cx7.LANES:
        half_prefix = "enP2p1s0" if lane.half else "enp1s0"
        assert lane.netdev == f"{half_prefix}f{lane.port}np{lane.port}"
        assert lane.rdma == ("roceP2p1s0" if lane.half else "rocep1s0") + f"f{lane.port}"
    assert len({(lane.port, lane.half) for lane in cx7.LANES}) == 4


def test_link_off_commands_are_qmp_set_link():
    assert qmp.link_off_commands(["qsfp0"]) == [
        {"execute": "set_link", "arguments": {"name": "qsfp0", "up": False}}]


class FakeQmp:
    """A QMP server on a unix socket: records each command, answers `return` (or an error)."""

    def __init__(self, path: Path, fail: str | None = None):
        self.commands, self.fail = [], fail
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(1)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        conn, _ = self.server.accept()
        with conn:
            stream = conn.makefile("rwb")
            stream.write(b'{"QMP": {"version": {}}}\n')
            stream.flush()
            for line in stream:
                command = json.loads(line)
                self.commands.append(command)
                if command["execute"] == self.fail:
                    reply = {"error": {"class": "GenericError", "desc": "Device 'x' not found"}}
                else:
                    reply = {"return": {}}
                stream.write(json.dumps(reply).encode() + b"\n")
                stream.flush()

    def close(self):
        self.server.close()


@pytest.fixture
def fake_qemu(monkeypatch):
    """nodes.start without qemu: the 'daemonized' VM is a fake QMP socket."""
    started = {}

    def run(argv, **kwargs):
        started["argv"] = argv
        started["qmp"] = FakeQmp(node_files("spark-1")["qmp"], started.get("fail"))
        return type("Done", (), {"returncode": 0, "stderr": ""})()

    monkeypatch.setattr(nodes.subprocess, "run", run)
    monkeypatch.setattr(nodes, "require", lambda program: "/usr/bin/" + program)
    terminated = []
    monkeypatch.setattr(nodes, "running_pid", lambda index: 4242)
    monkeypatch.setattr(nodes.processes, "terminate", lambda pid: terminated.append(pid))
    started["terminated"] = terminated
    yield started
    if "qmp" in started:
        started["qmp"].close()


@pytest.mark.parametrize("cables, pulled", [("port1", ["qsfp0", "qsfp1"]), ("both", [])])
def test_start_pulls_the_uncabled_links_then_resumes_the_paused_vm(fake_qemu, cables, pulled):
    nodes.start(1, 2, IMAGE, cables)
    assert "-S" in fake_qemu["argv"] and "-daemonize" in fake_qemu["argv"]
    commands = fake_qemu["qmp"].commands
    assert commands[0] == {"execute": "qmp_capabilities"}
    assert commands[1:] == [{"execute": "set_link", "arguments": {"name": n, "up": False}} for n in pulled] \
        + [{"execute": "cont"}]
    assert fake_qemu["terminated"] == []


def test_a_refused_set_link_stops_the_vm_with_one_clear_line(fake_qemu):
    fake_qemu["fail"] = "set_link"
    with pytest.raises(LabError, match=r"spark-1: could not set the QSFP links over QMP \(Device 'x' not found\)"):
        nodes.start(1, 2, IMAGE, "port1")
    assert fake_qemu["terminated"] == [4242]
    assert {"execute": "cont"} not in fake_qemu["qmp"].commands


@pytest.fixture
def offline_lab(monkeypatch):
    """lab.up and lab.rebuild with every VM operation recorded instead of done."""
    calls = {"start": [], "running": [], "accel": [], "budgets": []}
    monkeypatch.setattr(lab, "require", lambda program: program)
    monkeypatch.setattr(lab, "running_indexes", lambda: list(calls["running"]))
    monkeypatch.setattr(lab.image_mod, "ensure_image", lambda **kwargs: IMAGE)
    monkeypatch.setattr(lab.nodes, "check_ports", lambda index: None)
    monkeypatch.setattr(lab.nodes, "ensure_overlay", lambda index, image: False)
    monkeypatch.setattr(lab.nodes, "stop", lambda index, graceful=True: False)
    monkeypatch.setattr(lab.nodes, "delete_files", lambda index: None)
    monkeypatch.setattr(lab.ssh, "forget_host_key", lambda index: None)

    def start(index, count, image, cables, accel):
        calls["start"].append((index, cables))
        calls["accel"].append(accel)

    def wait_for_ssh(indexes, budget, log=print):
        calls["budgets"].append(budget)
        return {i: 1.0 for i in indexes}

    monkeypatch.setattr(lab.nodes, "start", start)
    monkeypatch.setattr(lab, "wait_for_ssh", wait_for_ssh)
    monkeypatch.setattr(lab.accel_mod, "probe_kvm", lambda: lab.accel_mod.KvmProbe(exists=False))
    return calls


def test_the_cabling_choice_is_kept_for_restarts_and_rebuilds(offline_lab):
    lab.up(2, log=lambda *a: None)
    assert offline_lab["start"] == [(1, "port1"), (2, "port1")]  # the default: one cable in port 1
    assert json.loads((state.state_dir() / "lab.json").read_text())["cables"] == "port1"

    offline_lab["start"].clear()
    lab.up(2, cables="both", log=lambda *a: None)
    assert offline_lab["start"] == [(1, "both"), (2, "both")]

    offline_lab["start"].clear()
    lab.up(2, log=lambda *a: None)  # a restart without the option keeps the choice
    lab.rebuild("spark-2", log=lambda *a: None)
    assert offline_lab["start"] == [(1, "both"), (2, "both"), (2, "both")]
    assert lab.recorded_cables() == "both"


def test_a_running_lab_refuses_other_cables(offline_lab):
    lab.up(2, log=lambda *a: None)
    offline_lab["running"] = [1, 2]
    with pytest.raises(LabError, match=r"running with --cables port1: `python -m lab down` first"):
        lab.up(2, cables="both", log=lambda *a: None)
    assert lab.recorded_cables() == "port1"


def test_a_lab_recorded_before_the_option_has_port1_cabled():
    (state.state_dir() / "lab.json").write_text('{"nodes": 2, "image": "/x"}\n')
    assert lab.recorded_cables() == "port1" and lab.recorded_count() == 2
    (state.state_dir() / "lab.json").write_text('["not", "a", "layout"]\n')
    assert lab.recorded_cables() == "port1" and lab.recorded_count() is None


def test_status_names_the_cabled_and_empty_ports(offline_lab, monkeypatch):
    monkeypatch.setattr(lab.nodes, "running_pid", lambda index: None)
    lab.up(2, cables="port1", log=lambda *a: None)
    lines = []
    lab.status(log=lines.append)
    assert ("QSFP cables: port1: port 1 cabled (enp1s0f1np1 + enP2p1s0f1np1); "
            "port 0 empty, no carrier (enp1s0f0np0 + enP2p1s0f0np0)") in lines


def test_cli_takes_cables_and_rejects_others(capsys):
    assert cli.build_parser().parse_args(["up", "--cables", "both"]).cables == "both"
    assert cli.build_parser().parse_args(["up"]).cables is None
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["up", "--cables", "port0"])
    assert "--cables" in capsys.readouterr().err


def test_up_prints_records_and_uses_the_accelerator_it_chose(offline_lab, monkeypatch):
    kvm_host = lab.accel_mod.KvmProbe(exists=True, api_version=12, cpu_flags=frozenset({"vmx"}))
    monkeypatch.setattr(lab.accel_mod, "probe_kvm", lambda: kvm_host)
    monkeypatch.delenv("SPARK_LAB_ACCEL", raising=False)
    lines = []
    lab.up(2, log=lines.append)
    assert lines[0] == "lab: accelerator kvm (/dev/kvm answers)"
    assert offline_lab["accel"] == ["kvm", "kvm"]
    recorded = json.loads((state.state_dir() / "lab.json").read_text())
    assert (recorded["accel"], recorded["accel_reason"]) == ("kvm", "/dev/kvm answers")
    monkeypatch.setattr(lab.nodes, "running_pid", lambda index: None)
    shown = []
    lab.status(log=shown.append)
    assert "accelerator: kvm (/dev/kvm answers)" in shown

    lines.clear()
    lab.up(2, log=lines.append, accel="tcg")
    assert lines[0] == "lab: accelerator tcg (forced by --accel)" and offline_lab["accel"][-2:] == ["tcg", "tcg"]
    assert lab.recorded_accel() == ("tcg", "forced by --accel")


def test_up_waits_by_a_budget_for_its_accelerator_vms_and_load(offline_lab, monkeypatch):
    monkeypatch.setattr(lab.accel_mod, "probe_kvm", lambda: lab.accel_mod.KvmProbe(exists=False))
    monkeypatch.delenv("SPARK_LAB_ACCEL", raising=False)
    monkeypatch.delenv("SPARK_LAB_BOOT_TIMEOUT", raising=False)
    monkeypatch.setattr(lab.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(lab, "host_load", lambda: 2.0)
    lab.up(2, log=lambda *a: None)
    budget = offline_lab["budgets"][-1]
    assert (budget.accel, budget.booting, budget.cpus, budget.load, budget.seconds) == ("tcg", 2, 2, 2.0, 600)

    offline_lab["running"] = [1]  # one VM already up: only one boots
    lab.up(2, timeout=100, log=lambda *a: None)
    assert (offline_lab["budgets"][-1].booting, offline_lab["budgets"][-1].seconds) == (1, 150)

    monkeypatch.setenv("SPARK_LAB_BOOT_TIMEOUT", "50")
    lab.rebuild("spark-2", log=lambda *a: None)
    assert (offline_lab["budgets"][-1].booting, offline_lab["budgets"][-1].seconds) == (1, 75)


def test_a_running_lab_keeps_its_accelerator_and_refuses_another(offline_lab, monkeypatch):
    probe = {"found": lab.accel_mod.KvmProbe(exists=False)}
    monkeypatch.setattr(lab.accel_mod, "probe_kvm", lambda: probe["found"])
    monkeypatch.delenv("SPARK_LAB_ACCEL", raising=False)
    lab.up(2, log=lambda *a: None)
    assert lab.recorded_accel()[0] == "tcg"
    # KVM appears (say, a module loaded) while the lab runs: the lab stays under one accelerator.
    probe["found"] = lab.accel_mod.KvmProbe(exists=True, api_version=12, cpu_flags=frozenset({"svm"}))
    offline_lab["running"] = [1]
    lines = []
    lab.up(2, log=lines.append)
    assert lines[0].startswith("lab: accelerator tcg (/dev/kvm: missing") and lines[0].endswith(
        "; kept: the lab's VMs run under it)")
    assert offline_lab["accel"][-1] == "tcg"
    lab.rebuild("spark-2", log=lambda *a: None)
    assert offline_lab["accel"][-1] == "tcg"
    with pytest.raises(LabError, match=r"the lab is running under tcg, not kvm: `python -m lab down` first"):
        lab.up(2, accel="kvm", log=lambda *a: None)
    offline_lab["running"] = []
    lab.up(2, log=lambda *a: None)
    assert lab.recorded_accel() == ("kvm", "/dev/kvm answers") and offline_lab["accel"][-1] == "kvm"
