"""Signal names and numbers without `import signal` (which imports enum: ~4 ms).

`parse("TERM")`, `parse("SIGTERM")`, `parse("15")` -> 15. Numbers are the
x86-64/arm64 Linux ones, the same on every architecture kapal runs on.
"""

from __future__ import annotations

from kapal.errors import Invalid

NUMBERS = {
    "SIGHUP": 1,
    "SIGINT": 2,
    "SIGQUIT": 3,
    "SIGILL": 4,
    "SIGTRAP": 5,
    "SIGABRT": 6,
    "SIGIOT": 6,
    "SIGBUS": 7,
    "SIGFPE": 8,
    "SIGKILL": 9,
    "SIGUSR1": 10,
    "SIGSEGV": 11,
    "SIGUSR2": 12,
    "SIGPIPE": 13,
    "SIGALRM": 14,
    "SIGTERM": 15,
    "SIGSTKFLT": 16,
    "SIGCHLD": 17,
    "SIGCONT": 18,
    "SIGSTOP": 19,
    "SIGTSTP": 20,
    "SIGTTIN": 21,
    "SIGTTOU": 22,
    "SIGURG": 23,
    "SIGXCPU": 24,
    "SIGXFSZ": 25,
    "SIGVTALRM": 26,
    "SIGPROF": 27,
    "SIGWINCH": 28,
    "SIGIO": 29,
    "SIGPOLL": 29,
    "SIGPWR": 30,
    "SIGSYS": 31,
}
SIGRTMIN = 34
SIGRTMAX = 64

SIGKILL = 9
SIGTERM = 15
SIGPIPE = 13
SIGXFSZ = 25


def parse(text: str | int) -> int:
    if isinstance(text, int):
        number = text
    elif text.isdigit():
        number = int(text)
    else:
        name = text.upper()
        if not name.startswith("SIG"):
            name = "SIG" + name
        if name in NUMBERS:
            return NUMBERS[name]
        if name.startswith("SIGRTMIN") or name.startswith("SIGRTMAX"):
            base, _, offset = name[3:].partition("+") if "+" in name else name[3:].partition("-")
            try:
                delta = int(offset) if offset else 0
            except ValueError:
                raise Invalid(f"unknown signal {text!r}") from None
            number = (SIGRTMIN + delta) if base == "RTMIN" else (SIGRTMAX - delta)
        else:
            raise Invalid(f"unknown signal {text!r}")
    if not 1 <= number <= SIGRTMAX:
        raise Invalid(f"signal {text!r} is out of range 1-{SIGRTMAX}")
    return number
