"""Signal and capability names, as runc and podman spell them."""

from __future__ import annotations

import signal

import pytest

from kapal.errors import Invalid
from kapal.linux import capabilities, signals


@pytest.mark.parametrize("text", ["TERM", "SIGTERM", "sigterm", "15"])
def test_signal_spellings(text):
    assert signals.parse(text) == signal.SIGTERM


def test_every_named_signal_matches_the_stdlib():
    for name, number in signals.NUMBERS.items():
        if hasattr(signal, name):
            assert getattr(signal, name) == number, name


def test_realtime_and_bad_signals():
    assert signals.parse("RTMIN+2") == 36 and signals.parse("SIGRTMAX") == 64
    for bad in ("NOPE", "0", "65", "RTMIN+x"):
        with pytest.raises(Invalid):
            signals.parse(bad)


def test_capability_masks():
    assert capabilities.mask(["CAP_CHOWN", "kill", "CAP_SYS_ADMIN"]) == 1 | 1 << 5 | 1 << 21
    assert capabilities.names(1 << 21 | 1) == ["CAP_CHOWN", "CAP_SYS_ADMIN"]
    with pytest.raises(Invalid, match="CAP_NOPE"):
        capabilities.mask(["CAP_NOPE"])
    assert capabilities.last_cap() < len(capabilities.NAMES), "every capability this kernel has is named"
