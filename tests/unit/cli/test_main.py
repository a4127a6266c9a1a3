"""The `kapal` front door: help, unknown verbs, and staying light."""

from __future__ import annotations

import json
import subprocess
import sys

from kapal.cli.main import VERBS, main


def test_help_lists_every_verb(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for verb in VERBS:
        assert f"  {verb}" in out


def test_unknown_verb_exits_125(capsys):
    assert main(["frobnicate"]) == 125
    assert "'frobnicate' is not a kapal command" in capsys.readouterr().err


def test_unknown_flag_exits_125(capsys):
    assert main(["--frob"]) == 125
    assert "unknown flag" in capsys.readouterr().err


def test_help_imports_nothing_heavy():
    code = (
        "import sys, json\n"
        "from kapal.cli.main import main\n"
        "import contextlib, io\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['--help'])\n"
        "heavy = ('asyncio', 'aiohttp', 'cryptography', 'yaml')\n"
        "print(json.dumps(sorted(m for m in heavy if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []
