"""A runtime's failure to start a container's command, as dockerd reports it (exit code, words, HTTP class)."""

from __future__ import annotations

from kapal.engine.runtimes import docker_words, start_exit_code, start_failure
from kapal.errors import FailedPrecondition, Invalid

KAPAL_NOT_FOUND = 'exec: "nonexist": executable file not found in $PATH'
RUNC_NO_FILE = 'runc run failed: unable to start container process: exec: "/x": stat /x: no such file or directory'
CRUN_NOT_FOUND = "executable file `nonexist` not found in $PATH: No such file or directory"


def test_exit_codes_follow_dockerd():
    assert start_exit_code(KAPAL_NOT_FOUND, "nonexist") == 127
    assert start_exit_code(RUNC_NO_FILE, "/x") == 127
    assert start_exit_code('exec: "/etc": permission denied', "/etc") == 126
    assert start_exit_code("cgroups in hybrid mode not supported", "sh") == 128
    # a missing file that is not the command (a bind source) is not "command not found"
    assert start_exit_code("mount /src: no such file or directory", "sh") == 128


def test_crun_is_told_in_runc_words():
    assert docker_words(CRUN_NOT_FOUND) == KAPAL_NOT_FOUND
    assert docker_words(RUNC_NO_FILE) == RUNC_NO_FILE


def test_a_bad_command_is_the_callers_to_fix():
    error = start_failure(CRUN_NOT_FOUND, "nonexist")
    assert isinstance(error, Invalid) and str(error) == f"OCI runtime create failed: {KAPAL_NOT_FOUND}"
    assert isinstance(start_failure("no cgroup", "sh"), FailedPrecondition)
