"""Pseudo-terminals for containers, and handing the master to a console socket.

The pty must come from the container's own devpts instance (its /dev/pts),
so the container sees a /dev/pts/N of its own. The master goes to whoever
listens on `--console-socket` (conmon, the engine's shim) in one sendmsg with
a single SCM_RIGHTS fd, as runc does; the slave becomes the process's stdio
and controlling terminal and is bind-mounted on /dev/console.

Uses `_socket` rather than `socket` (which imports enum, selectors: ~6 ms).
"""

from __future__ import annotations

import _socket
import fcntl
import os
import struct
import sys

TIOCSCTTY = 0x540E
TIOCGPTN = 0x80045430
TIOCSPTLCK = 0x40045431
TIOCGPTPEER = 0x5441
TIOCSWINSZ = 0x5414
TIOCGWINSZ = 0x5413
SOL_SOCKET = 1
SCM_RIGHTS = 1


def open_pty(ptmx: str) -> tuple[int, int, int]:
    """(master fd, slave fd, pty number) from the ptmx node of a devpts instance."""
    master = os.open(ptmx, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
        number = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0\0\0\0"))[0]
        slave = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except BaseException:
        os.close(master)
        raise
    return master, slave, number


def connect(path: str) -> int:
    """Connect to a listening console socket; returns the connected fd.

    A path longer than a unix socket address holds (107 bytes) is reached through an O_PATH fd of its
    directory, as /proc/self/fd/N/NAME: callers in deep data roots cannot chdir (threads share the cwd).
    """
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    dir_fd = None
    try:
        target = path
        if len(os.fsencode(path)) > 107:
            directory, name = os.path.split(path)
            dir_fd = os.open(directory or ".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            target = f"/proc/self/fd/{dir_fd}/{name}"
        sock.connect(target)
    except OSError as e:
        sock.close()
        raise OSError(e.errno, f"console socket {path}: {e.strerror or e}") from e
    finally:
        if dir_fd is not None:
            os.close(dir_fd)
    return sock.detach()


def send_fd(sock_fd: int, fd: int, name: bytes = b"/dev/ptmx") -> None:
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, sock_fd)
    try:
        sock.sendmsg([name], [(SOL_SOCKET, SCM_RIGHTS, fd.to_bytes(4, sys.byteorder))])
    finally:
        sock.detach()


def receive_fd(sock_fd: int) -> tuple[int, bytes]:
    """Receive one fd sent with `send_fd`: (fd, payload)."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, sock_fd)
    try:
        msg, ancdata, _flags, _addr = sock.recvmsg(4096, 64)
    finally:
        sock.detach()
    for level, kind, data in ancdata:
        if level == SOL_SOCKET and kind == SCM_RIGHTS and len(data) >= 4:
            return int.from_bytes(data[:4], sys.byteorder), msg
    raise OSError("console socket: no file descriptor received")


def make_controlling_terminal(slave: int) -> None:
    """setsid, make `slave` the controlling tty and stdin/stdout/stderr."""
    try:
        os.setsid()
    except PermissionError:
        pass  # already a session leader
    fcntl.ioctl(slave, TIOCSCTTY, 0)
    for target in (0, 1, 2):
        os.dup2(slave, target)


def get_size(fd: int) -> tuple[int, int]:
    rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, TIOCGWINSZ, b"\0" * 8))
    return rows, cols


def set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
