"""Relay between the caller's terminal and a container's pty, for foreground `run`/`exec` with a terminal.

Without --console-socket, runc keeps the pty master itself and copies bytes
both ways; so does this: stdin (raw mode when it is a terminal) -> master,
master -> stdout, window size copied at start and on SIGWINCH, until the
container side closes (read on the master fails with EIO).
"""

from __future__ import annotations

import errno
import os
import select


def relay(master: int, stdin: int = 0, stdout: int = 1) -> None:
    from kapal.linux import console

    saved = None
    if os.isatty(stdin):
        import termios
        import tty

        saved = termios.tcgetattr(stdin)
        tty.setraw(stdin, termios.TCSANOW)  # TCSAFLUSH would drop what the user typed ahead
        try:
            console.set_size(master, *console.get_size(stdin))
        except OSError:
            pass
    try:
        _copy(master, stdin, stdout)
    finally:
        if saved is not None:
            import termios

            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)


def _copy(master: int, stdin: int, stdout: int) -> None:
    poller = select.poll()
    poller.register(master, select.POLLIN)
    stdin_open = True
    try:
        poller.register(stdin, select.POLLIN)
    except (OSError, ValueError):
        stdin_open = False
    while True:
        for fd, event in poller.poll():
            if fd == master:
                try:
                    data = os.read(master, 65536)
                except OSError as e:
                    if e.errno == errno.EIO:
                        return
                    raise
                if not data:
                    return
                _write_all(stdout, data)
            elif stdin_open:
                data = os.read(stdin, 65536) if event & (select.POLLIN | select.POLLHUP) else b""
                if not data:
                    poller.unregister(stdin)
                    stdin_open = False
                    _write_all(master, b"\x04")  # EOF for the program on the other side
                else:
                    _write_all(master, data)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
