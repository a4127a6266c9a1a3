"""The CLI's engine client encodes JSON and URLs as the json package and urllib.parse do."""

from __future__ import annotations

import json
from urllib.parse import quote, quote_plus

import pytest

from kapal.engine import client

DOCS = [
    {"Image": "kb/bb:1", "Cmd": ["sh", "-c", 'echo "hi" \\ \n\t\x01'], "Env": None, "Tty": False, "AttachStdout": True},
    {"HostConfig": {"Memory": 268435456, "NanoCpus": 1_500_000_000, "ConsoleSize": [30, 100], "Ratio": 0.25}},
    {"Labels": {"é": "ünïcode", "emoji": "\U0001f600", "surrogate": "\udcff"}, "Volumes": {}, "List": []},
    [1, -2, 3.5e-10, True, False, None, "", {}],
    {1: "int key", False: "bool key", None: "none key", 2.5: "float key"},
]


@pytest.mark.parametrize("doc", DOCS)
def test_dumps_is_json_dumps_without_spaces(doc):
    assert client.dumps(doc) == json.dumps(doc, separators=(",", ":"))


@pytest.mark.parametrize("doc", DOCS[:4])
def test_loads_reads_what_json_writes(doc):
    text = json.dumps(doc, indent=2)
    assert client.loads(text.encode()) == json.loads(text)
    assert client.loads(" \n" + text + "\n") == json.loads(text)


def test_loads_knows_nan_and_infinity():
    values = client.loads(b"[NaN, Infinity, -Infinity, 1e400]")
    assert values[0] != values[0] and values[1:] == [float("inf"), float("-inf"), float("inf")]


@pytest.mark.parametrize("text", ["", "{", '{"a": 1} x', "nul", '{"a": 1,}', "[1 2]"])
def test_loads_rejects_what_json_rejects(text):
    with pytest.raises(ValueError) as ours:
        client.loads(text.encode())
    with pytest.raises(json.JSONDecodeError) as theirs:
        json.loads(text)
    assert str(ours.value) == str(theirs.value)


def test_dumps_refuses_what_json_refuses():
    with pytest.raises(TypeError, match="not JSON serializable"):
        client.dumps({"a": object()})


@pytest.mark.parametrize("text", ["/containers/abc/json", "/images/reg:5000/a/b:1@sha256:00/json", "a b+c&d=é%/~",
                                  '{"status":{"exited":true}}', "", "\U0001f600 ü"])
def test_quoting_is_urllib_s(text):
    assert client.quote(text, safe="/:@%+,=") == quote(text, safe="/:@%+,=")
    assert client.quote_plus(text) == quote_plus(text, safe="")


def test_paths_carry_the_api_version_and_docker_s_query_values():
    path = client.EngineClient.path("/containers/x y/json", {"all": True, "size": False, "f": "é x", "l": ["1", "2"],
                                                             "skip": None})
    assert path == "/v1.47/containers/x%20y/json?all=1&size=0&f=%C3%A9+x&l=1&l=2"
