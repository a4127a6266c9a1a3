"""The runtime's JSON (the C accelerator alone) reads and writes what the json module does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kapal.errors import Invalid
from kapal.runtime import jsonio

SAMPLE = Path("/work/shared/docs/samples/podman-config.json")


@pytest.mark.parametrize("doc", [
    {"a": [1, 2.5, None, True, False, "é", {"b": {}}], "c": [], "d": -1, "e": 1e100, "f": 18446744073709551615},
    [], "x", 0,
])
def test_round_trip_matches_json(doc):
    text = jsonio.dumps(doc)
    assert text == json.dumps(doc, separators=(",", ":"))
    assert jsonio.loads(text) == doc
    assert json.loads(jsonio.dumps(doc, indent=2)) == doc
    assert jsonio.dumps(doc, indent=2) == json.dumps(doc, indent=2)


def test_reads_podmans_config():
    if not SAMPLE.exists():
        pytest.skip("sample not available")
    assert jsonio.loads(SAMPLE.read_bytes()) == json.loads(SAMPLE.read_text())


@pytest.mark.parametrize("bad", ["{", '{"a":1} x', "[1,]", '"\\x"', "", "{'a': 1}", b"\xff"])
def test_errors_name_the_document(bad):
    with pytest.raises(Invalid, match="config.json"):
        jsonio.loads(bad, what="config.json")


def test_error_path_works_without_the_json_module_loaded():
    code = ("import sys; sys.path.insert(0, 'src'); from kapal.runtime import jsonio\n"
            "from kapal.errors import Invalid\n"
            "try:\n    jsonio.loads('{\"a\": ', 'c.json')\nexcept Invalid as e:\n    print(e)")
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[3])
    assert out.stdout.startswith("c.json: invalid JSON"), out.stderr


def test_importing_it_does_not_import_json_or_re():
    code = ("import sys; sys.path.insert(0, 'src'); import kapal.runtime.jsonio; "
            "print(sorted(m for m in ('json', 're', 'enum') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[3])
    assert out.stdout.strip() == "[]"
