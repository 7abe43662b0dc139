"""The one supervisor: real child processes exiting, restarted by policy, stopped on request (last started first)."""

from __future__ import annotations

import sys
import time

from footfall.supervisor import NEVER, Child, RestartPolicy, Supervisor


def exits_with(code: int) -> list[str]:
    return [sys.executable, "-c", f"import sys; sys.exit({code})"]


def sleeps() -> list[str]:
    return [sys.executable, "-c", "import time; time.sleep(60)"]


def settle(child: Child, timeout_s: float = 20) -> int:
    deadline = time.monotonic() + timeout_s
    while (code := child.poll()) is None:
        assert time.monotonic() < deadline, "the child never stopped for good"
        time.sleep(0.05)
    return code


def test_an_exit_the_policy_names_is_restarted_up_to_its_limit_and_then_reported(tmp_path):
    with Supervisor(interval_s=0.02) as supervisor:
        child = supervisor.start(
            Child("w", exits_with(70), log_dir=tmp_path, policy=RestartPolicy(exit_codes=frozenset({70}), max_restarts=3))
        )
        assert settle(child) == 70
        assert supervisor.given_up() == [child]
    assert child.restarts == 3 and child.incarnation == 4
    assert [e["code"] for e in child.exits] == [70, 70, 70]
    assert [p.name for p in sorted(tmp_path.iterdir())] == ["w-2.log", "w-3.log", "w-4.log", "w.log"]


def test_other_exits_and_never_are_not_restarted():
    with Supervisor(interval_s=0.02) as supervisor:
        other = supervisor.start(Child("a", exits_with(1), policy=RestartPolicy(exit_codes=frozenset({70}))))
        never = supervisor.start(Child("b", exits_with(70), policy=NEVER))
        assert (settle(other), settle(never)) == (1, 70)
        time.sleep(0.2)
    assert other.restarts == never.restarts == 0


def test_restarts_within_a_window_and_not_sooner_than_the_minimum_uptime():
    policy = RestartPolicy(max_restarts=2, window_s=60, min_uptime_s=0.3)
    with Supervisor(interval_s=0.02) as supervisor:
        started = time.monotonic()
        child = supervisor.start(Child("c", exits_with(3), policy=policy))
        assert settle(child) == 3
    assert child.restarts == 2 and time.monotonic() - started >= 0.6
    assert all(e["after_s"] >= 0.3 for e in child.exits)


def test_a_child_killed_or_stopped_on_purpose_stays_down_until_started_again():
    with Supervisor(interval_s=0.02) as supervisor:
        child = supervisor.start(Child("d", sleeps(), policy=RestartPolicy(max_restarts=None)))
        child.kill9()
        time.sleep(0.2)
        assert child.poll() == -9 and child.restarts == 0 and supervisor.given_up() == []
        child.start()
        assert child.alive() and child.incarnation == 2


def test_stop_stops_every_child_the_last_started_first():
    stopped: list[str] = []

    class Recorded(Child):
        def stop(self, timeout_s: float = 30) -> None:
            stopped.append(self.name)
            super().stop(timeout_s)

    supervisor = Supervisor()
    children = [supervisor.start(Recorded(name, sleeps())) for name in ("projector", "processor", "collector")]
    supervisor.stop(timeout_s=5)
    assert stopped == ["collector", "processor", "projector"]
    assert all(not child.alive() and child.held for child in children)
