"""`kapal-runtime VERB --help` prints the verb's usage and exits 0, as runc does."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kapal.cli import runtime as cli

VENV = Path(__file__).resolve().parents[3] / ".venv" / "bin"


@pytest.mark.parametrize("verb", sorted(cli.FLAGS))
def test_every_verb_has_help_naming_its_flags(verb):
    text = cli.verb_usage(verb)
    assert text.startswith(f"Usage: kapal-runtime {verb} ")
    for spelling in cli.FLAGS[verb]:
        assert spelling in text


@pytest.mark.parametrize("argv", [
    [str(VENV / "kapal-runtime"), "create", "--help"],
    [str(VENV / "kapal-runtime"), "--root", "/nonexistent", "kill", "-h"],
    [str(VENV / "kapal"), "runtime", "exec", "--help"],
])
def test_verb_help_exits_zero_with_usage(argv):
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    verb = argv[-2]
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"Usage: kapal-runtime {verb} ")
    assert "unknown flag" not in out.stderr


def test_help_after_the_id_of_exec_goes_to_the_process():
    opts = cli.parse("exec", ["ID", "ls", "--help"])
    assert opts.args == ["ID", "ls", "--help"]
    assert "help" not in opts.values
