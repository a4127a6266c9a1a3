"""kapal-runtime parses runc's command line: global flags first, command flags before the id."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kapal.cli import runtime as cli
from kapal.errors import Unsupported

ROOT = Path(__file__).resolve().parents[3]


def test_create_flags_as_conmon_sends_them():
    opts = cli.parse("create", ["--bundle", "/b", "--pid-file", "/p", "--no-pivot", "--preserve-fds", "2",
                                "--console-socket=/tmp/sock", "ID"])
    assert opts.args == ["ID"]
    assert opts.values == {"bundle": "/b", "pid-file": "/p", "no-pivot": True, "preserve-fds": 2,
                           "console-socket": "/tmp/sock"}


def test_exec_keeps_everything_after_the_id():
    opts = cli.parse("exec", ["-t", "-e", "A=1", "-e", "B=2", "ID", "sh", "-c", "echo -e"])
    assert opts.args == ["ID", "sh", "-c", "echo -e"]
    assert opts.values == {"tty": True, "env": ["A=1", "B=2"]}


def test_short_flag_clusters_and_bool_values():
    assert cli.parse("run", ["-d", "ID"]).values == {"detach": True}
    assert cli.parse("exec", ["-td", "ID", "x"]).values == {"tty": True, "detach": True}
    assert cli.parse("delete", ["--force=false", "ID"]).values == {"force": False}


def test_unknown_flags_and_missing_values():
    with pytest.raises(cli.Usage, match="--frob"):
        cli.parse("kill", ["--frob", "ID"])
    with pytest.raises(cli.Usage, match="needs a value"):
        cli.parse("create", ["--bundle"])
    with pytest.raises(cli.Usage, match="number"):
        cli.parse("create", ["--preserve-fds", "x", "ID"])


def test_global_flags():
    g, rest = cli._parse_globals(["--root", "/r", "--log-format=json", "--log", "/l", "--debug", "state", "x"])
    assert (g.root, g.log_format, g.log, g.debug, rest) == ("/r", "json", "/l", True, ["state", "x"])
    with pytest.raises(Unsupported, match="systemd"):
        cli._parse_globals(["--systemd-cgroup", "create", "x"])


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / ".venv" / "bin" / "kapal-runtime"), *args], capture_output=True, text=True)


def test_version_help_and_unknown_commands():
    result = run("--version")
    assert result.returncode == 0 and result.stdout.startswith("kapal-runtime version ")
    assert "spec: 1.0.2" in result.stdout
    assert run("--help").stdout.startswith("Usage: kapal-runtime")
    result = run("frobnicate")
    assert result.returncode == 1 and "unknown command 'frobnicate'" in result.stderr
    result = run("checkpoint", "x")
    assert result.returncode == 1 and "not supported" in result.stderr


def test_kapal_runtime_and_kapal_runtime_verb_are_the_same_code():
    a = run("--version").stdout.splitlines()
    b = subprocess.run([str(ROOT / ".venv" / "bin" / "kapal"), "runtime", "--version"], capture_output=True,
                       text=True).stdout.splitlines()
    assert a[:2] == b[:2]  # the third line names the interpreter, which may differ (see the Makefile)


def test_the_launcher_stays_light():
    code = ("import sys; sys.argv=['kapal-runtime', '--version']; sys.path.insert(0, 'src');"
            "import kapal.cli.runtime as r; r._main(['--version']);"
            "print(sorted(m for m in ('asyncio', 'json', 're', 'enum', 'typing', 'dataclasses', 'ctypes', 'argparse',"
            " 'socket', 'aiohttp', 'yaml', 'cryptography') if m in sys.modules))")
    out = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-SE", "-c", code], capture_output=True,
                         text=True, cwd=ROOT)
    assert out.stdout.strip().splitlines()[-1] == "[]", out


def test_spec_writes_config_json_and_refuses_to_overwrite(tmp_path):
    result = run("spec", "--bundle", str(tmp_path))
    assert result.returncode == 0 and result.stdout == ""
    import json

    config = json.loads((tmp_path / "config.json").read_text())
    assert config["process"]["args"] == ["sh"] and config["root"]["path"] == "rootfs"
    result = run("spec", "--bundle", str(tmp_path))
    assert result.returncode == 1 and "exists" in result.stderr
