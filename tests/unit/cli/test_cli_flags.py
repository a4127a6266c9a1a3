"""The docker verbs' light flag parser gives what argparse gives, for the verbs' own parsers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kapal.cli import docker, docker_containers
from kapal.cli.docker_flags import FlagParser, UsageError

SRC = Path(__file__).resolve().parents[3] / "src"


class _Captured(Exception):
    pass


def verb_parser(monkeypatch, fn, argv: list[str]) -> FlagParser:
    """The parser a verb builds (the verb stops at parse_args)."""
    seen: dict[str, FlagParser] = {}

    def capture(self: FlagParser, _argv: list[str]):
        seen["parser"] = self
        raise _Captured

    monkeypatch.setattr(FlagParser, "parse_args", capture)
    with pytest.raises(_Captured):
        fn(argv)
    monkeypatch.undo()
    return seen["parser"]


def argparse_result(p: FlagParser, argv: list[str]) -> dict:
    return vars(p._argparse().parse_args(argv))


PLAIN = {
    docker_containers.cmd_run: [
        ["--rm", "img", "true"],
        ["-it", "--rm", "img", "sh"],
        ["-dit", "img"],
        ["-d", "--name", "web", "-p", "127.0.0.1:8080:80", "-p80:81", "-e", "A=1", "--env=B=2", "-v", "/a:/b",
         "--cpu-period", "100000", "--cpu-quota=20000", "img", "sh", "-c", "echo hi; exit 3"],
        ["-h", "host", "-u", "1000", "-w", "/tmp", "img"],
        ["--memory=256m", "img", "free", "-m"],
        ["img", "--rm", "-x"],
        ["--cpus", "1.5", "--ulimit", "nofile=10:20", "--ulimit", "nproc=5", "--cap-add", "NET_ADMIN", "img"],
        ["--health-cmd", "true", "--health-retries", "3", "img"],
        ["--name=", "img"],
        ["-", "x"],
    ],
    docker_containers.cmd_ps: [[], ["-a"], ["-aq"], ["-a", "--format", "{{.ID}}\t{{.Names}}"], ["-n", "3"],
                               ["-f", "status=exited", "-f", "name=x"], ["--no-trunc", "-s", "--last=2"]],
    docker_containers.cmd_logs: [["c"], ["-f", "c"], ["--tail", "5", "-t", "c"], ["-n5", "c"],
                                 ["--since", "10m", "c"]],
    docker_containers.cmd_exec: [["c", "ls"], ["-it", "c", "sh"], ["-e", "A=1", "-u", "0", "c", "sh", "-c", "x"],
                                 ["-d", "c", "sleep", "1"], ["c", "ls", "-l", "--", "-x"]],
    docker_containers.cmd_rm: [["a", "b"], ["-f", "a"], ["-fv", "a"]],
    docker_containers.cmd_stop: [["-t", "5", "a"], ["--time=5", "a", "b"], ["-s", "KILL", "a"]],
    docker_containers.cmd_top: [["c"], ["c", "-ef"]],
    docker.cmd_images: [[], ["-q"], ["--format", "{{.ID}}", "kb/bb"], ["-a", "--digests"], ["-f", "dangling=true"]],
    docker.cmd_inspect: [["a"], ["--type", "image", "-f", "{{.Id}}", "a", "b"]],
    docker.cmd_import: [["-", "ref:1"], ["-c", "CMD [\"x\"]", "f.tar"]],
}


@pytest.mark.parametrize(
    "fn,argv", [(fn, argv) for fn, cases in PLAIN.items() for argv in cases],
    ids=lambda v: v.__name__ if callable(v) else " ".join(v) or "-",
)
def test_plain_command_lines_parse_without_argparse_as_argparse_does(monkeypatch, fn, argv):
    p = verb_parser(monkeypatch, fn, argv)
    plain = p._parse_plain(argv)
    assert plain is not None, "this command line should not need argparse"
    assert plain == argparse_result(p, argv)
    assert vars(p.parse_args(argv)) == plain


UNUSUAL = {
    docker_containers.cmd_run: [["--na", "web", "img"], ["--memory-swap", "-1", "img"], ["-e=A", "img"],
                                ["-ite=A", "img"], ["img", "--", "x"], ["--", "img"], ["--oom-score-adj", "-5", "img"]],
    docker_containers.cmd_rm: [["a", "-f"]],
    docker_containers.cmd_ps: [["--las", "2"]],
}


@pytest.mark.parametrize(
    "fn,argv", [(fn, argv) for fn, cases in UNUSUAL.items() for argv in cases],
    ids=lambda v: v.__name__ if callable(v) else " ".join(v) or "-",
)
def test_unusual_command_lines_are_argparse_s(monkeypatch, fn, argv):
    p = verb_parser(monkeypatch, fn, argv)
    assert vars(p.parse_args(argv)) == argparse_result(p, argv)


ERRORS = {
    docker_containers.cmd_run: [([], "the following arguments are required: image"),
                                (["--nope", "img"], "unrecognized arguments: --nope"),
                                (["--rm=1", "img"], "argument --rm: ignored explicit argument '1'"),
                                (["--cpu-period", "x", "img"], "argument --cpu-period: invalid int value: 'x'"),
                                (["--name"], "argument --name: expected one argument")],
    docker_containers.cmd_rm: [(["a", "-f", "b"], "unrecognized arguments: b")],
    docker.cmd_inspect: [(["--type", "network", "a"], "argument --type: invalid choice: 'network'")],
}


@pytest.mark.parametrize(
    "fn,argv,message", [(fn, argv, m) for fn, cases in ERRORS.items() for argv, m in cases],
    ids=lambda v: v.__name__ if callable(v) else (" ".join(v) or "-") if isinstance(v, list) else "",
)
def test_bad_command_lines_fail_with_argparse_s_words(monkeypatch, fn, argv, message):
    p = verb_parser(monkeypatch, fn, argv)
    with pytest.raises(UsageError) as err:
        p.parse_args(argv)
    assert message in str(err.value)
    assert str(err.value).endswith(f"See '{p.prog} --help'.")


def test_help_is_argparse_s(monkeypatch, capsys):
    p = verb_parser(monkeypatch, docker_containers.cmd_ps, ["--help"])
    with pytest.raises(SystemExit) as done:
        p.parse_args(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: kapal ps [-h] [-a] [-q]") and "--no-trunc" in out


def test_run_path_imports_only_what_it_uses():
    """Parsing `run` flags and building the create body loads none of argparse, re, json, socket, typing, enum."""
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(SRC)!r})\n"
        "from kapal.cli import docker_containers as d, docker_create as dc\n"
        "p = d.Parser(prog='kapal run', add_help=False)\n"
        "p.add_argument('--rm', action='store_true')\n"
        "p.add_argument('-d', '--detach', action='store_true')\n"
        "dc.add_flags(p)\n"
        "a = p.parse_args(['--rm', '-e', 'A=1', '-p', '80:80', 'img', 'true'])\n"
        "body = d.dumps(dc.container_body(a, False))\n"
        "assert d.loads(b'{\"Id\": \"x\"}') == {'Id': 'x'}\n"
        "heavy = ('argparse', 're', 'json', 'socket', 'typing', 'enum', 'threading', 'urllib.parse', 'shlex')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.replace("'", '"')) == []
