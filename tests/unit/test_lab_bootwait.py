"""Boot waits: a budget for the accelerator, the VMs booting and the host's load, extended while
a console grows, never past the ceiling; and the wait itself with a fake clock and fake VMs."""

import pytest

from lab import bootwait
from lab.bootwait import Node, boot_budget, keep_waiting


def test_an_idle_host_gets_the_accelerators_base():
    assert boot_budget("tcg", 1, 4, 0.0).seconds == 300
    assert boot_budget("kvm", 1, 4, 0.0).seconds == 120
    assert boot_budget("tcg", 2, 2, 0.0).seconds == 300  # one CPU per VM: no slower


def test_more_vms_than_cpus_or_a_loaded_host_stretches_it():
    # The case: 2 VMs on 2 CPUs already busy with other work.
    loaded = boot_budget("tcg", 2, 2, 2.0)
    assert loaded.factor == 2.0 and loaded.seconds == 600
    assert boot_budget("tcg", 4, 2, 0.0).seconds == 600
    assert boot_budget("kvm", 4, 2, 1.0).seconds == 120 * 2.5
    assert boot_budget("tcg", 2, 2, 0.5).seconds == pytest.approx(375)


def test_the_budget_never_passes_the_ceiling_unless_asked_for_more():
    assert boot_budget("tcg", 4, 1, 30.0).seconds == bootwait.CEILING_S == 1500
    assert boot_budget("tcg", 1, 1, 0.0).ceiling == 1500
    asked = boot_budget("tcg", 1, 8, 0.0, base=3000)
    assert asked.seconds == asked.ceiling == 3000


def test_an_explicit_base_is_scaled_like_the_default():
    assert boot_budget("tcg", 2, 2, 2.0, base=100).seconds == 200
    assert boot_budget("kvm", 1, 2, 0.0, base=30).seconds == 30


def test_past_the_budget_only_a_growing_console_keeps_the_wait_going():
    budget = boot_budget("tcg", 1, 4, 0.0)  # 300 s, stall 180 s, ceiling 1500 s
    assert keep_waiting(299, 299, budget)  # silent, but within the budget
    assert keep_waiting(400, 10, budget)  # past it, console grew 10 s ago
    assert keep_waiting(400, 179, budget)
    assert not keep_waiting(400, 180, budget)  # silent for the stall window: stuck
    assert not keep_waiting(1500, 0, budget)  # the ceiling holds even while it grows


def test_describe_says_what_the_budget_is_made_of():
    text = boot_budget("tcg", 2, 2, 1.0).describe()
    assert text.startswith("450s (300s under tcg x1.5 for 2 VM(s) booting + load 1.0 on 2 CPU(s))")
    assert "silent for 180s ends it" in text and "at most 1500s" in text
    assert boot_budget("kvm", 1, 8, 0.0).describe().startswith("120s (120s under kvm), then")


def test_last_console_line_drops_colour_and_blank_lines():
    text = "Booting\r\n[\x1b[0;32m  OK  \x1b[0m] Started ssh.service - OpenBSD Secure Shell server.\r\n\r\n"
    assert bootwait.last_console_line(text) == "[  OK  ] Started ssh.service - OpenBSD Secure Shell server."
    assert bootwait.last_console_line("") == "(nothing yet)"
    assert bootwait.last_console_line("x" * 300, width=20) == "x" * 17 + "..."


class FakeHost:
    """A clock that advances only when the wait sleeps, and VMs whose consoles grow on a schedule."""

    def __init__(self, tmp_path, nodes):
        self.now = 1000.0
        self.nodes = {}
        for index, plan in nodes.items():
            console = tmp_path / f"spark-{index}.console.log"
            console.write_text("")
            self.nodes[index] = dict(plan, console=console)

    def node(self, index):
        return Node(index, f"spark-{index}", f"127.0.0.1:{2220 + index}", self.nodes[index]["console"])

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds
        elapsed = self.now - 1000.0
        for index, plan in self.nodes.items():
            if elapsed <= plan.get("grows_until", 0):
                with open(plan["console"], "a") as console:
                    console.write(f"[  OK  ] step at {elapsed:.0f}s\n")

    def reachable(self, index):
        answers = self.nodes[index].get("answers_at")
        return answers is not None and self.now - 1000.0 >= answers

    def running(self, index):
        exits = self.nodes[index].get("exits_at")
        return exits is None or self.now - 1000.0 < exits

    def wait(self, budget, log):
        watched = [self.node(i) for i in sorted(self.nodes)]
        return bootwait.wait(watched, budget, self.reachable, self.running, log=log,
                             clock=self.clock, sleep=self.sleep, poll=3.0, progress_every=30.0)


def test_a_slow_boot_past_the_budget_is_waited_for_while_its_console_grows(tmp_path):
    # The failure: both VMs still booting at 300 s, answering a minute later.
    host = FakeHost(tmp_path, {1: {"grows_until": 350, "answers_at": 360},
                               2: {"grows_until": 370, "answers_at": 381}})
    lines = []
    done = host.wait(boot_budget("tcg", 2, 2, 0.0), lines.append)
    assert [n.failure for n in done] == [None, None]
    assert [round(n.answered) for n in done] == [360, 381]
    assert lines[0].startswith("waiting for SSH, 30s of 300s: "
                               "spark-1 (127.0.0.1:2221, console silent 0s): [  OK  ] step at 30s; ")
    assert lines[0].endswith("spark-2 (127.0.0.1:2222, console silent 0s): [  OK  ] step at 30s")
    assert any("past the 300s budget while consoles grow (at most 1500s)" in line for line in lines)
    assert len(lines) == 12  # one line per 30 s up to 381 s, no more


def test_a_stuck_vm_is_given_up_once_its_console_is_silent_past_the_budget(tmp_path):
    host = FakeHost(tmp_path, {1: {"answers_at": 42}, 2: {"grows_until": 100}})
    done = host.wait(boot_budget("tcg", 2, 2, 0.0), lambda line: None)
    assert round(done[0].answered) == 42
    failure = done[1].failure
    # Past the 300 s budget, silent since 100 s: the stall window (180 s) runs out at 300 s.
    assert failure.startswith("no SSH on 127.0.0.1:2222 after 300s (waited 300s (300s under tcg)")
    assert "its console had been silent for 201s" in failure  # its last line came at 99 s
    assert failure.endswith("its console last showed: '[  OK  ] step at 99s'")


def test_a_console_that_never_stops_is_cut_at_the_ceiling(tmp_path):
    host = FakeHost(tmp_path, {1: {"grows_until": 10**6}})
    done = host.wait(boot_budget("kvm", 1, 4, 0.0), lambda line: None)
    assert done[0].failure.startswith("no SSH on 127.0.0.1:2221 after 1500s")


def test_a_vm_that_exits_is_not_waited_for(tmp_path):
    host = FakeHost(tmp_path, {1: {"grows_until": 20, "exits_at": 25}, 2: {"answers_at": 60}})
    done = host.wait(boot_budget("tcg", 2, 2, 0.0), lambda line: None)
    assert done[0].failure == "its VM exited after 27s; its console last showed: '[  OK  ] step at 18s'"
    assert round(done[1].answered) == 60
