"""The container process: OCI `process` -> a checked plan, then the last steps before execve.

`ProcessPlan.from_oci` runs in the runtime (errors surface before anything
exists). The `apply_*` steps and `exec_plan` run in the child - the init of a
new container or a process joining one with exec - in runc's order:
rlimits, oom_score_adj, no_new_privs, (seccomp if privileged), bounding set,
user and groups with kept caps, capsets and ambient, cwd (checked to be
inside the container: CVE-2024-21626), PATH lookup. Then the caller syncs
with its parent, and `exec_plan` closes every stray fd, restores signal
dispositions and mask to a fresh process's, (seccomp if no_new_privs) and execs.
"""

from __future__ import annotations

import os

from kapal.errors import Invalid, NotFound
from kapal.linux import capabilities, libc, seccomp
from kapal.runtime.spec import validate_process

RLIMITS = {
    "RLIMIT_CPU": 0,
    "RLIMIT_FSIZE": 1,
    "RLIMIT_DATA": 2,
    "RLIMIT_STACK": 3,
    "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5,
    "RLIMIT_NPROC": 6,
    "RLIMIT_NOFILE": 7,
    "RLIMIT_MEMLOCK": 8,
    "RLIMIT_AS": 9,
    "RLIMIT_LOCKS": 10,
    "RLIMIT_SIGPENDING": 11,
    "RLIMIT_MSGQUEUE": 12,
    "RLIMIT_NICE": 13,
    "RLIMIT_RTPRIO": 14,
    "RLIMIT_RTTIME": 15,
}
_INFINITY = (1 << 64) - 1
PR_SET_NO_NEW_PRIVS = 38
PR_SET_DUMPABLE = 4
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ProcessPlan:
    """What to exec and with which identity, limits and privileges."""

    __slots__ = (
        "args",
        "env",
        "cwd",
        "uid",
        "gid",
        "groups",
        "umask",
        "caps",
        "rlimits",
        "no_new_privileges",
        "oom_score_adj",
        "terminal",
        "console_size",
    )

    @classmethod
    def from_oci(cls, proc: dict) -> ProcessPlan:
        validate_process(proc)
        p = cls()
        p.args = list(proc["args"])
        p.env = list(proc.get("env") or [])
        p.cwd = proc.get("cwd") or "/"
        user = proc.get("user") or {}
        p.uid = int(user.get("uid", 0))
        p.gid = int(user.get("gid", 0))
        p.groups = [int(g) for g in user.get("additionalGids") or []]
        umask = user.get("umask")
        p.umask = 0o022 if umask is None else int(umask)
        caps = proc.get("capabilities")
        p.caps = capabilities.CapabilitySets.from_oci(caps) if caps is not None else None
        p.rlimits = []
        for rl in proc.get("rlimits") or ():
            number = RLIMITS.get(rl.get("type", ""))
            if number is None:
                raise Invalid(f"process.rlimits: unknown type {rl.get('type')!r}")
            p.rlimits.append((rl["type"], number, _limit(rl.get("soft", 0)), _limit(rl.get("hard", 0))))
        p.no_new_privileges = bool(proc.get("noNewPrivileges"))
        p.oom_score_adj = proc.get("oomScoreAdj")
        p.terminal = bool(proc.get("terminal"))
        size = proc.get("consoleSize") or {}
        p.console_size = (size.get("height", 0), size.get("width", 0)) if size else None
        return p

    def env_dict(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for item in self.env:
            key, sep, value = item.partition("=")
            if sep:
                out[key] = value
        return out


def _limit(value: int) -> int:
    return -1 if value >= _INFINITY or value < 0 else value


def set_non_dumpable() -> None:
    """Hide this process's /proc/PID (exe, mem, fds) from the container (CVE-2019-5736)."""
    libc.prctl(PR_SET_DUMPABLE, 0)


def apply_rlimits(plan: ProcessPlan) -> None:
    for name, number, soft, hard in plan.rlimits:
        try:
            libc.setrlimit(number, soft, hard)
        except OSError as e:
            raise PermissionError(
                e.errno, f"setting rlimit {name} to soft={soft} hard={hard}: {os.strerror(e.errno).lower()}"
            ) from e


def apply_oom_score_adj(plan: ProcessPlan) -> None:
    if plan.oom_score_adj is None:
        return
    try:
        fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, str(plan.oom_score_adj).encode())
        finally:
            os.close(fd)
    except PermissionError as e:
        raise PermissionError(
            e.errno, f"setting oomScoreAdj {plan.oom_score_adj}: permission denied (lowering it needs CAP_SYS_RESOURCE)"
        ) from e


def apply_no_new_privileges(plan: ProcessPlan) -> None:
    if plan.no_new_privileges:
        libc.prctl(PR_SET_NO_NEW_PRIVS, 1)


def apply_user_and_caps(plan: ProcessPlan) -> None:
    caps = plan.caps
    if caps is not None:
        capabilities.drop_bounding(caps.bounding)
        capabilities.keep_caps(True)
    os.setgroups(plan.groups)
    os.setresgid(plan.gid, plan.gid, plan.gid)
    os.setresuid(plan.uid, plan.uid, plan.uid)
    if caps is not None:
        capabilities.keep_caps(False)
        capabilities.set_sets(caps.effective, caps.permitted, caps.inheritable)
        if caps.ambient:
            capabilities.raise_ambient(caps.ambient)
    os.umask(plan.umask)


def enter_cwd(plan: ProcessPlan) -> None:
    """chdir and make sure the result is inside the container (no leaked host directory)."""
    try:
        os.chdir(plan.cwd)
    except FileNotFoundError:
        raise NotFound(f"process.cwd {plan.cwd}: no such file or directory") from None
    except NotADirectoryError:
        raise Invalid(f"process.cwd {plan.cwd}: not a directory") from None
    try:
        here = os.getcwd()
    except FileNotFoundError:
        here = "(unreachable)"
    if not here.startswith("/"):
        raise Invalid(f"process.cwd {plan.cwd} is outside the container's root; refusing it")


def user_home(uid: int) -> str:
    try:
        with open("/etc/passwd") as f:
            for line in f:
                fields = line.rstrip("\n").split(":")
                if len(fields) >= 6 and fields[2] == str(uid):
                    return fields[5] or "/"
    except OSError:
        pass
    return "/"


def look_path(arg0: str, env: dict[str, str]) -> str:
    """The executable to run, like Go's exec.LookPath (so podman can map the message to exit 127)."""
    if "/" in arg0:
        if os.path.isfile(arg0) and os.access(arg0, os.X_OK):
            return arg0
        if not os.path.exists(arg0):
            raise NotFound(f'exec: "{arg0}": stat {arg0}: no such file or directory')
        raise PermissionError(13, f'exec: "{arg0}": permission denied')
    for directory in env.get("PATH", DEFAULT_PATH).split(":"):
        candidate = (directory or ".") + "/" + arg0
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise NotFound(f'exec: "{arg0}": executable file not found in $PATH')


def prepare(plan: ProcessPlan, seccomp_bpf: bytes | None) -> tuple[str, dict[str, str]]:
    """Everything up to the exec gate; returns (executable, environment)."""
    apply_rlimits(plan)
    apply_oom_score_adj(plan)
    apply_no_new_privileges(plan)
    if seccomp_bpf is not None and not plan.no_new_privileges:
        seccomp.load(seccomp_bpf)
    apply_user_and_caps(plan)
    enter_cwd(plan)
    env = plan.env_dict()
    if "HOME" not in env:
        env["HOME"] = user_home(plan.uid)
    return look_path(plan.args[0], env), env


def exec_plan(
    plan: ProcessPlan,
    path: str,
    env: dict[str, str],
    seccomp_bpf: bytes | None,
    preserve_fds: int,
    preserved: list[int],
) -> None:
    """Close every fd above stdio and the preserved ones, restore signals, exec. Never returns.

    `preserved` lists the fds of 3..3+preserve_fds-1 that were open when the
    runtime started; anything the runtime itself opened stays close-on-exec.
    """
    for fd in preserved:
        os.set_inheritable(fd, True)
    libc.close_range(3 + preserve_fds, 0xFFFFFFFF, libc.CLOSE_RANGE_CLOEXEC)
    libc.reset_signals()
    if seccomp_bpf is not None and plan.no_new_privileges:
        seccomp.load(seccomp_bpf)
    os.execve(path, plan.args, env)
