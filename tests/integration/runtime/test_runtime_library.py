"""The runtime as a library, the way the engine and the kubelet use it: forking from a warm process."""

from __future__ import annotations

import os
import threading

import pytest

from kapal.errors import AlreadyExists, FailedPrecondition, NotFound
from kapal.linux import namespaces
from kapal.runtime import container
from kapal.runtime.state import StateStore

pytestmark = pytest.mark.root


def reap(pid: int) -> int:
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_create_start_wait_delete_with_our_own_stdio(runtime, make_bundle, tmp_path):
    bundle = make_bundle(["/bin/sh", "-c", "read x; echo out:$x; echo err >&2; exit 6"])
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    root = str(runtime.root)
    pid = container.create(root, bundle.id, str(bundle.path), stdio=(in_r, out_w, err_w))
    for fd in (in_r, out_w, err_w):
        os.close(fd)
    assert container.state(root, bundle.id)["status"] == "created"
    container.start(root, bundle.id)
    os.write(in_w, b"ping\n")
    os.close(in_w)
    assert reap(pid) == 6  # the init is our child: we reap it for the exit code
    assert os.read(out_r, 100) == b"out:ping\n" and os.read(err_r, 100) == b"err\n"
    assert container.state(root, bundle.id)["status"] == "stopped"
    container.delete(root, bundle.id)
    with pytest.raises(NotFound):
        container.state(root, bundle.id)


def test_errors_are_kapal_errors(runtime, make_bundle):
    root = str(runtime.root)
    bundle = make_bundle(["/bin/sleep", "30"])
    null = os.open(os.devnull, os.O_RDWR)
    try:
        pid = container.run(root, bundle.id, str(bundle.path), detach=True, stdio=(null, null, null))
        with pytest.raises(AlreadyExists):
            container.create(root, bundle.id, str(bundle.path))
        with pytest.raises(FailedPrecondition):
            container.delete(root, bundle.id)
        with pytest.raises(FailedPrecondition):
            container.start(root, bundle.id)
        container.delete(root, bundle.id, force=True)
        assert reap(pid) == -9  # killed by SIGKILL
    finally:
        os.close(null)


def test_foreground_run_and_exec_return_exit_codes(runtime, make_bundle):
    root = str(runtime.root)
    null = os.open(os.devnull, os.O_RDWR)
    try:
        bundle = make_bundle(["/bin/sh", "-c", "exit 12"])
        assert container.run(root, bundle.id, str(bundle.path), stdio=(null, null, null)) == 12
        assert container.list_containers(root) == []
        bundle = make_bundle(["/bin/sleep", "30"])
        pid = container.run(root, bundle.id, str(bundle.path), detach=True, stdio=(null, null, null))
        config = StateStore(root).load_config(bundle.id)
        process = container.process_from_config(config, ["/bin/sh", "-c", "exit 13"])
        assert container.exec_process(root, bundle.id, process, stdio=(null, null, null)) == 13
        assert pid in container.ps(root, bundle.id)
        container.delete(root, bundle.id, force=True)
        reap(pid)
    finally:
        os.close(null)


def test_create_from_a_worker_thread_of_a_threaded_process(runtime, make_bundle):
    root = str(runtime.root)
    bundle = make_bundle(["/bin/true"])
    null = os.open(os.devnull, os.O_RDWR)
    busy = threading.Event()
    spinner = threading.Thread(target=lambda: busy.wait(5), daemon=True)
    spinner.start()
    result: dict = {}

    def worker() -> None:
        try:
            result["code"] = container.run(root, bundle.id, str(bundle.path), stdio=(null, null, null))
        except Exception as e:  # surfaced below
            result["error"] = e

    t = threading.Thread(target=worker)
    t.start()
    t.join(30)
    busy.set()
    os.close(null)
    assert result == {"code": 0}
    with open("/proc/self/status") as f:
        assert [line for line in f if line.startswith("NSpid")][0].split()[1:] == [str(os.getpid())]
    assert os.readlink("/proc/self/ns/pid_for_children") == os.readlink("/proc/self/ns/pid")  # restored


def test_pod_namespaces_are_joined_by_path(runtime, make_bundle, tmp_path):
    """A sandbox's net/ipc/uts, pinned to files, shared by a later container (how the kubelet makes pods)."""
    root = str(runtime.root)
    null = os.open(os.devnull, os.O_RDWR)
    pins = {kind: str(tmp_path / f"pod-{kind}") for kind in ("network", "ipc", "uts")}
    try:
        sandbox = make_bundle(["/bin/sleep", "30"], hostname="pod-host")
        sandbox_pid = container.run(root, sandbox.id, str(sandbox.path), detach=True, stdio=(null, null, null))
        for kind, path in pins.items():
            namespaces.pin(sandbox_pid, kind, path)
        container.delete(root, sandbox.id, force=True)  # the namespaces outlive the sandbox's process
        reap(sandbox_pid)

        app = make_bundle(["/bin/sh", "-c", "hostname; readlink /proc/self/ns/net; readlink /proc/self/ns/ipc"])
        app.config["linux"]["namespaces"] = [
            {"type": t, "path": pins[t]} if t in pins else {"type": t} for t in ("pid", "network", "ipc", "uts",
                                                                                 "mount")
        ]
        app.write()
        out = runtime("run", "--bundle", str(app.path), app.id).stdout.split()
        assert out[0] == "pod-host"
        assert out[1] == f"net:[{os.stat(pins['network']).st_ino}]"
        assert out[2] == f"ipc:[{os.stat(pins['ipc']).st_ino}]"
    finally:
        for path in pins.values():
            namespaces.unpin(path)
        os.close(null)
    assert not any(os.path.exists(p) for p in pins.values())


def test_warm_process_starts_containers_quickly(runtime, make_bundle):
    """Not a timing assertion: a warm caller starts many containers in a row and they all clean up."""
    root = str(runtime.root)
    bundle = make_bundle(["/bin/true"])
    null = os.open(os.devnull, os.O_RDWR)
    try:
        for i in range(5):
            assert container.run(root, f"{bundle.id}-{i}", str(bundle.path), stdio=(null, null, null)) == 0
    finally:
        os.close(null)
    assert container.list_containers(root) == []
