"""kapal's default seccomp profile: an allow-list, modelled on the idea of Docker's default (deny what a
container has no business doing, by default EPERM) but written here from the syscall table by purpose.
It allows at least what Docker's current default allows on x86_64 and aarch64 (a program that runs under
Docker runs here: getrandom for OpenSSL, statx, rseq, clone3 answered ENOSYS so glibc falls back to
clone, no io_uring as in Docker since 2023), with the same socket families refused (AF_ALG, AF_VSOCK).

What a container may not do without the matching capability: load kernel modules, reboot, set the
clock, take another process's fds (pidfd_getfd, kcmp), mount, create namespaces (clone/unshare flags),
switch the kernel's personality, use the kernel keyring, perf, bpf, userfaultfd, io_uring, or raw I/O
ports. ptrace is allowed as Docker allows it since kernel 4.8 (seccomp re-checks a traced syscall).
Syscalls granted by a capability are allowed only when the container keeps that capability
(`--cap-add`), and `--privileged` or `--security-opt seccomp=unconfined` drop the filter. Unknown names
are skipped by the runtime (libseccomp resolves them per architecture), so the list may name newer
syscalls.
"""

from __future__ import annotations

import os

EPERM = 1
ENOSYS = 38

# Namespace-creating clone flags: NEWNS NEWCGROUP NEWUTS NEWIPC NEWUSER NEWPID NEWNET (and NEWTIME, 0x80).
CLONE_NAMESPACE_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000

_FILES = """
access faccessat faccessat2 chdir fchdir chmod fchmod fchmodat chown fchown fchownat lchown chown32 fchown32
lchown32 close close_range creat dup dup2 dup3 fadvise64 fadvise64_64 fallocate fcntl fcntl64 fdatasync flock
fstat fstat64 fstatat64 newfstatat fstatfs fstatfs64 statfs statfs64 fsync ftruncate ftruncate64 getcwd getdents
getdents64 link linkat lseek _llseek lstat lstat64 mkdir mkdirat mknod mknodat open openat openat2 pread64
preadv preadv2 pwrite64 pwritev pwritev2 read readahead readlink readlinkat readv rename renameat renameat2 rmdir
sendfile sendfile64 splice stat stat64 statx symlink symlinkat sync sync_file_range syncfs tee truncate truncate64
umask unlink unlinkat utime utimensat utimensat_time64 utimes futimesat vmsplice write writev copy_file_range
getxattr lgetxattr fgetxattr listxattr llistxattr flistxattr setxattr lsetxattr fsetxattr removexattr
lremovexattr fremovexattr memfd_create name_to_handle_at inotify_add_watch inotify_init inotify_init1
inotify_rm_watch fanotify_mark io_setup io_destroy io_submit io_cancel io_getevents io_pgetevents
io_pgetevents_time64 ioctl mincore cachestat fchmodat2 getxattrat setxattrat listxattrat removexattrat
listmount statmount
"""

_MEMORY = """
brk mmap mmap2 munmap mremap mprotect pkey_alloc pkey_free pkey_mprotect madvise mlock mlock2 mlockall munlock
munlockall msync membarrier remap_file_pages process_mrelease map_shadow_stack memfd_secret mseal uretprobe
"""

_PROCESSES = """
arch_prctl prctl capget capset clone exit exit_group execve execveat fork vfork wait4 waitid waitpid getpid getppid
gettid getpgid getpgrp getsid setsid setpgid getuid getuid32 geteuid geteuid32 getgid getgid32 getegid getegid32
getresuid getresuid32 getresgid getresgid32 getgroups getgroups32 setuid setuid32 setgid setgid32 setreuid
setreuid32 setregid setregid32 setresuid setresuid32 setresgid setresgid32 setgroups setgroups32 setfsuid
setfsuid32 setfsgid setfsgid32 getpriority setpriority sched_getaffinity sched_setaffinity sched_getattr
sched_setattr sched_getparam sched_setparam sched_getscheduler sched_setscheduler sched_get_priority_max
sched_get_priority_min sched_rr_get_interval sched_rr_get_interval_time64 sched_yield getrlimit setrlimit prlimit64
ugetrlimit getrusage set_tid_address set_robust_list get_robust_list rseq set_thread_area get_thread_area times
uname ioprio_get ioprio_set pidfd_open pidfd_send_signal seccomp landlock_add_rule landlock_create_ruleset
landlock_restrict_self sysinfo getcpu capset restart_syscall getrandom modify_ldt riscv_hwprobe
ptrace process_vm_readv process_vm_writev
"""

_SIGNALS_AND_TIME = """
kill tkill tgkill rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend
rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo sigaltstack signalfd signalfd4 sigprocmask sigreturn alarm
pause nanosleep clock_nanosleep clock_nanosleep_time64
clock_getres clock_getres_time64 clock_gettime clock_gettime64 gettimeofday time getitimer setitimer timer_create
timer_delete timer_getoverrun timer_gettime timer_gettime64 timer_settime timer_settime64 timerfd_create
timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64 futex futex_time64 futex_waitv futex_wait
futex_wake futex_requeue adjtimex clock_adjtime clock_adjtime64
"""

_EVENTS_AND_IPC = """
epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd
eventfd2 poll ppoll ppoll_time64 select _newselect pselect6 pselect6_time64 pipe pipe2 msgctl msgget msgrcv msgsnd
semctl semget semop semtimedop semtimedop_time64 shmat shmctl shmdt shmget mq_getsetattr mq_notify mq_open
mq_timedreceive mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink ipc
"""

_NETWORK = """
socketpair socketcall bind connect listen accept accept4 getsockname getpeername getsockopt setsockopt send sendto
sendmsg sendmmsg recv recvfrom recvmsg recvmmsg recvmmsg_time64 shutdown
"""

# socket(2) families refused, as Docker does: AF_ALG (the kernel's crypto API) and AF_VSOCK
REFUSED_SOCKET_FAMILIES = (38, 40)

# capability → syscalls it unlocks (checked against the container's bounding set)
BY_CAPABILITY: dict[str, str] = {
    "CAP_SYS_ADMIN": """mount umount umount2 unshare setns pivot_root chroot setdomainname sethostname quotactl
        fsconfig fsmount fsopen fspick move_mount mount_setattr lookup_dcookie perf_event_open bpf fanotify_init
        clone3 swapon swapoff vhangup syslog keyctl add_key request_key open_tree quotactl_fd lsm_get_self_attr
        lsm_set_self_attr lsm_list_modules""",
    "CAP_DAC_READ_SEARCH": "open_by_handle_at",
    "CAP_SYS_CHROOT": "chroot",
    "CAP_SYS_PTRACE": "kcmp pidfd_getfd process_madvise",
    "CAP_SYS_MODULE": "init_module finit_module delete_module",
    "CAP_SYS_TIME": "settimeofday stime clock_settime clock_settime64",
    "CAP_SYS_BOOT": "reboot kexec_load kexec_file_load",
    "CAP_SYS_PACCT": "acct",
    "CAP_SYS_RAWIO": "iopl ioperm",
    "CAP_SYS_NICE": "move_pages migrate_pages get_mempolicy set_mempolicy mbind set_mempolicy_home_node",
    "CAP_SYSLOG": "syslog",
    "CAP_BPF": "bpf",
    "CAP_PERFMON": "perf_event_open",
    "CAP_SYS_TTY_CONFIG": "vhangup",
    "CAP_SYS_RESOURCE": "",
}

_ARCHITECTURES = {
    "x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
}

# personality(2) values that do not change how the kernel treats the process
_PERSONALITIES = (0x0, 0x0008, 0x20000, 0x20008, 0xFFFFFFFF)


def _names(text: str) -> list[str]:
    return sorted(set(text.split()))


def _socket_rules() -> list[dict]:
    """socket(2) allowed for every family but the refused ones: below the first, between them, above the last."""

    def rule(op: str, value: int) -> dict:
        return {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 0, "value": value, "valueTwo": 0, "op": op}]}

    refused = sorted(REFUSED_SOCKET_FAMILIES)
    rules = [rule("SCMP_CMP_LT", refused[0])]
    for low, high in zip(refused, refused[1:]):
        rules += [rule("SCMP_CMP_EQ", family) for family in range(low + 1, high)]
    rules.append(rule("SCMP_CMP_GT", refused[-1]))
    return rules


def default_profile(capabilities: list[str]) -> dict:
    """The OCI `linux.seccomp` object for a container whose bounding set is `capabilities`."""
    caps = set(capabilities)
    allowed = set(_names(_FILES + _MEMORY + _PROCESSES + _SIGNALS_AND_TIME + _EVENTS_AND_IPC + _NETWORK))
    for cap, names in BY_CAPABILITY.items():
        if cap in caps:
            allowed |= set(names.split())
    syscalls: list[dict] = []
    admin = "CAP_SYS_ADMIN" in caps
    if not admin:
        allowed.discard("clone")
        allowed.discard("clone3")
        syscalls.append(
            {
                "names": ["clone"],
                "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 0, "value": CLONE_NAMESPACE_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
            }
        )
        # glibc falls back to clone(2) on ENOSYS, where the flags can be checked
        syscalls.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS})
    syscalls += _socket_rules()
    for value in _PERSONALITIES:
        syscalls.append(
            {
                "names": ["personality"],
                "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 0, "value": value, "valueTwo": 0, "op": "SCMP_CMP_EQ"}],
            }
        )
    syscalls.insert(0, {"names": sorted(allowed), "action": "SCMP_ACT_ALLOW"})
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": EPERM,
        "architectures": _ARCHITECTURES.get(os.uname().machine, []),
        "syscalls": syscalls,
    }
