"""`kapal` and the docker CLI against one engine: the same exit codes, output and error words for the everyday verbs."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
from engine_helpers import PtySession
from image_helpers import KAPAL

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def both(engine, docker):
    env = {**os.environ, "KAPAL_HOST": engine.host}

    def run(*args: str, input: str | None = None) -> dict[str, subprocess.CompletedProcess]:
        return {
            "docker": docker(*args, check=False, input=input),
            "kapal": subprocess.run([str(KAPAL), *args], capture_output=True, text=True, env=env, input=input,
                                    timeout=120),
        }

    def tool(name: str, *args: str) -> subprocess.CompletedProcess:
        if name == "docker":
            return docker(*args, check=False)
        return subprocess.run([str(KAPAL), *args], capture_output=True, text=True, env=env, timeout=120)

    run.env = env  # type: ignore[attr-defined]
    run.tool = tool  # type: ignore[attr-defined]
    return run


def same(results: dict[str, subprocess.CompletedProcess], stdout: str | None = None, code: int = 0) -> None:
    for tool, r in results.items():
        assert r.returncode == code, f"{tool}: {r.returncode} {r.stderr}"
        if stdout is not None:
            assert r.stdout == stdout, f"{tool}: {r.stdout!r}"


def test_run_exec_logs_ps_images_as_the_docker_cli(both, docker, busybox, unique):
    r = both("run", "--rm", busybox, "sh", "-c", "echo out; echo err >&2; exit 3")
    same(r, "out\n", 3)
    assert all(x.stderr == "err\n" for x in r.values())
    same(both("run", "-i", "--rm", busybox, "cat", input="a\nb\n"), "a\nb\n")
    same(both("run", "--rm", "-e", "A=1", "--env=B=2", "-w", "/tmp", busybox, "sh", "-c", "echo $A$B $PWD"),
         "12 /tmp\n")
    r = both("run", "--rm", busybox, "no-such-command")
    same(r, code=127)
    assert all("no-such-command" in x.stderr for x in r.values())

    names = {tool: f"{unique}-{tool}" for tool in ("docker", "kapal")}
    try:
        for tool, name in names.items():
            cid = both.tool(tool, "run", "-d", "--name", name, busybox, "sh", "-c", "echo hello; sleep 600")
            assert cid.returncode == 0 and len(cid.stdout.strip()) == 64, cid.stderr
        for name in names.values():
            same(both("exec", name, "sh", "-c", "echo in; exit 4"), "in\n", 4)
            r = both("logs", name)
            deadline = time.monotonic() + 10
            while r["kapal"].stdout != "hello\n" and time.monotonic() < deadline:
                time.sleep(0.1)
                r = both("logs", name)
            same(r, "hello\n")
        ps = both("ps", "--format", "{{.Names}} {{.Image}}")
        same(ps)
        assert ps["kapal"].stdout == ps["docker"].stdout
        assert {f"{n} {busybox}" for n in names.values()} <= set(ps["kapal"].stdout.split("\n"))
        same(both("ps", "-q", "--no-trunc", "--filter", f"name={names['kapal']}"),
             docker.out("inspect", "-f", "{{.Id}}", names["kapal"]) + "\n")
        images = both("images", "--format", "{{.Repository}}:{{.Tag}}")
        same(images)
        assert images["kapal"].stdout == images["docker"].stdout and busybox in images["kapal"].stdout.split()
    finally:
        docker("rm", "-f", *names.values(), check=False)
    r = both("exec", f"{unique}-gone", "true")
    same(r, code=1)
    assert all(f"No such container: {unique}-gone" in x.stderr for x in r.values())
    r = both("logs", f"{unique}-gone")
    same(r, code=1)
    assert all(f"No such container: {unique}-gone" in x.stderr for x in r.values())


def test_run_forwards_sigterm_to_the_container(both, busybox):
    proc = subprocess.Popen([str(KAPAL), "run", "--rm", busybox, "sh", "-c",
                             "trap 'echo got TERM; exit 7' TERM; echo ready; sleep 600 & wait"],
                            stdout=subprocess.PIPE, text=True, env=both.env)
    try:
        assert proc.stdout.readline() == "ready\n"
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.stdout.read() == "got TERM\n"
        assert proc.wait(30) == 7
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_usage_errors_exit_125_with_argparse_s_words(both, busybox):
    r = both("run", "--no-such-flag", busybox)["kapal"]
    assert r.returncode == 125
    assert r.stderr == "kapal: unrecognized arguments: --no-such-flag\nSee 'kapal run --help'.\n"
    r = subprocess.run([str(KAPAL), "ps", "--help"], capture_output=True, text=True, env=both.env)
    assert r.returncode == 0 and r.stdout.startswith("usage: kapal ps")


@pytest.mark.parametrize("tool", ["docker", "kapal"])
def test_run_it_keeps_what_was_typed_before_the_shell_started(both, docker, busybox, tool):
    """A line typed while the container starts reaches its shell (the terminal goes raw without a flush)."""
    argv = [docker.binary if tool == "docker" else str(KAPAL), "run", "-it", "--rm", busybox, "sh"]
    session = PtySession(argv, docker.env if tool == "docker" else both.env)
    session.send("echo ahead-$((40+2)); exit 6")
    session.read_until("ahead-42")
    assert session.wait() == 6
