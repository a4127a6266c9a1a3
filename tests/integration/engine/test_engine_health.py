"""Health checks as Docker, driven by the docker CLI: `--health-*` and an image's HEALTHCHECK (from a commit
change) run by exec in the container; State.Health (status, streak, the last 5 results), `docker ps`'s
STATUS and health filter, health_status events; a timeout kills the probe; pause and exit stop the checks."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
from image_helpers import KAPAL

pytestmark = pytest.mark.root

FAST = ["--health-interval", "200ms", "--health-timeout", "2s"]


def _health(docker, name: str) -> dict:
    return json.loads(docker.out("inspect", "--format", "{{json .State.Health}}", name))


def _until(docker, name: str, status: str, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        health = _health(docker, name)
        if health and health["Status"] == status:
            return health
        assert time.monotonic() < deadline, f"{name}: never {status}; last {health}"
        time.sleep(0.05)


def test_a_passing_check_makes_it_healthy_and_a_failing_one_unhealthy(docker, busybox, unique):
    good, bad = f"{unique}-good", f"{unique}-bad"
    since = time.time() - 0.1
    docker("run", "-d", "--name", good, *FAST, "--health-cmd", "echo fine; test -f /etc/motd", busybox, "sleep", "600")
    docker("run", "-d", "--name", bad, *FAST, "--health-retries", "2", "--health-cmd", "echo broken >&2; exit 3",
           busybox, "sleep", "600")
    try:
        assert docker.out("inspect", "--format", "{{.State.Health.Status}}", good) in ("starting", "healthy")
        health = _until(docker, good, "healthy")
        assert health["FailingStreak"] == 0 and health["Log"][-1]["ExitCode"] == 0
        assert health["Log"][-1]["Output"] == "fine\n"
        assert docker.out("ps", "--filter", f"name={good}", "--format", "{{.Status}}").endswith("(healthy)")
        health = _until(docker, bad, "unhealthy")
        assert health["FailingStreak"] >= 2 and health["Log"][-1] == {**health["Log"][-1], "ExitCode": 3,
                                                                        "Output": "broken\n"}
        assert set(health["Log"][-1]) == {"Start", "End", "ExitCode", "Output"}
        time.sleep(1.5)  # more probes ran: only the last 5 are kept
        assert len(_health(docker, bad)["Log"]) == 5
        assert docker.out("ps", "--filter", f"name={bad}", "--format", "{{.Status}}").endswith("(unhealthy)")
        names = docker.out("ps", "--filter", "health=healthy", "--format", "{{.Names}}").split()
        assert good in names and bad not in names
        assert bad in docker.out("ps", "--filter", "health=unhealthy", "--format", "{{.Names}}").split()
        events = docker.out("events", "--since", f"{since:.3f}", "--until", f"{time.time() + 0.3:.3f}",
                            "--filter", "event=health_status", "--format", "{{.Actor.Attributes.name}} {{.Action}}")
        assert f"{good} health_status: healthy" in events.splitlines()
        assert f"{bad} health_status: unhealthy" in events.splitlines()
        # stopped: no more checks; started again: starting, then healthy
        docker("stop", "-t", "0", good)
        count = len(_health(docker, good)["Log"])
        time.sleep(0.5)
        assert len(_health(docker, good)["Log"]) == count
        docker("start", good)
        _until(docker, good, "healthy")
    finally:
        docker("rm", "-f", good, bad, check=False)


def test_a_probe_that_runs_out_of_time_is_killed(docker, busybox, unique):
    name = f"{unique}-slow"
    docker("run", "-d", "--name", name, "--health-interval", "300ms", "--health-timeout", "200ms",
           "--health-retries", "1", "--health-cmd", "sleep 7", busybox, "sleep", "600")
    try:
        health = _until(docker, name, "unhealthy")
        assert health["Log"][0]["ExitCode"] == -1
        assert health["Log"][0]["Output"] == "Health check exceeded timeout (200ms)"
        time.sleep(0.3)
        # the killed probes are gone: at most the one running now is left
        probes = [line for line in docker.out("top", name).splitlines() if "sleep 7" in line]
        assert len(probes) <= 1, probes
    finally:
        docker("rm", "-f", name, check=False)


def test_an_image_healthcheck_from_a_commit_change_and_no_healthcheck(docker, busybox, unique):
    maker, image = f"{unique}-maker", f"{unique}-hc:1"
    docker("create", "--name", maker, busybox, "true")
    docker("commit", "--change", 'HEALTHCHECK --interval=200ms --retries=1 CMD ["test", "-e", "/tmp/ready"]',
           maker, image)
    name, off = f"{unique}-img", f"{unique}-off"
    try:
        check = json.loads(docker.out("image", "inspect", "--format", "{{json .Config.Healthcheck}}", image))
        assert check == {"Test": ["CMD", "test", "-e", "/tmp/ready"], "Interval": 200_000_000, "Retries": 1}
        docker("run", "-d", "--name", name, "--health-timeout", "2s", image, "sleep", "600")
        assert _until(docker, name, "unhealthy")["Log"][-1]["ExitCode"] == 1
        docker("exec", name, "touch", "/tmp/ready")
        _until(docker, name, "healthy")
        docker("pause", name)
        count = len(_health(docker, name)["Log"])
        time.sleep(0.5)
        assert len(_health(docker, name)["Log"]) == count  # paused: no probes
        assert docker.out("ps", "--filter", f"name={name}", "--format", "{{.Status}}").endswith("(Paused)")
        docker("unpause", name)
        docker("run", "-d", "--name", off, "--no-healthcheck", image, "sleep", "600")
        assert docker.out("inspect", "--format", "{{json .State.Health}}", off) == "null"
        assert off in docker.out("ps", "--filter", "health=none", "--format", "{{.Names}}").split()
        kapal = subprocess.run([str(KAPAL), "run", "-d", "--name", f"{unique}-k", "--health-cmd", "true",
                                "--health-interval", "200ms", busybox, "sleep", "600"], capture_output=True, text=True,
                               env={**os.environ, "KAPAL_HOST": docker.env["DOCKER_HOST"]}, timeout=60)
        assert kapal.returncode == 0, kapal.stderr
        _until(docker, f"{unique}-k", "healthy")
    finally:
        docker("rm", "-f", name, off, maker, f"{unique}-k", check=False)
        docker("rmi", image, check=False)


def test_bad_health_options_answer_as_docker(docker, busybox):
    r = docker("run", "--rm", "--health-interval", "500us", "--health-cmd", "true", busybox, "true", check=False)
    assert r.returncode != 0 and "Interval in Healthcheck cannot be less than 1ms" in r.stderr
    r = docker("run", "--rm", "--health-retries", "-1", busybox, "true", check=False)
    assert r.returncode != 0 and "--health-retries cannot be negative" in r.stderr
