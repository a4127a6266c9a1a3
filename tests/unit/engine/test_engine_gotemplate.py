"""The Go-template subset behind --format: what docker users write, and loud errors for the rest."""

from __future__ import annotations

import pytest

from kapal.engine.gotemplate import TemplateError, render

DATA = {
    "Id": "sha256:abc",
    "RootFS": {"Layers": ["sha256:1", "sha256:2"]},
    "Mounts": [{"Source": "/a", "Destination": "/x", "RW": True}, {"Source": "/b", "Destination": "/y", "RW": False}],
    "Config": {"Env": ["A=1", "B=2"], "Labels": {"k": "v"}, "Cmd": None},
    "State": {"Running": False, "ExitCode": 3},
}


@pytest.mark.parametrize(
    "template, expected",
    [
        ("{{.Id}}", "sha256:abc"),
        ("{{len .RootFS.Layers}}", "2"),
        ("{{range .Mounts}}{{.Source}}:{{.Destination}} {{end}}", "/a:/x /b:/y "),
        ("{{range .Mounts}}{{if .RW}}rw{{else}}ro{{end}},{{end}}", "rw,ro,"),
        ("{{json .Config.Env}}", '["A=1","B=2"]'),
        ('{{join .Config.Env ","}}', "A=1,B=2"),
        ('{{index .Config.Labels "k"}}', "v"),
        ("{{index .RootFS.Layers 1}}", "sha256:2"),
        ('{{printf "%s=%d" .Id .State.ExitCode}}', "sha256:abc=3"),
        ("{{.State.Running}} {{.Config.Cmd}} {{.Nope}}", "false <nil> <no value>"),
        ("{{.Config.Env | json}}", '["A=1","B=2"]'),
        ("{{with .Config}}{{.Labels.k}}{{end}}", "v"),
        ("{{if eq .State.ExitCode 3}}three{{end}}", "three"),
        ("a {{- .Id -}} b", "asha256:abcb"),
        ("{{upper .Config.Labels.k}}", "V"),
        ("{{.Config}}", "map[Cmd:<nil> Env:[A=1 B=2] Labels:map[k:v]]"),
    ],
)
def test_renders_like_go(template, expected):
    assert render(template, DATA) == expected


@pytest.mark.parametrize(
    "template, message",
    [
        ("{{foo .Id}}", 'function "foo" not defined'),
        ("{{range .Mounts}}", "has no {{end}}"),
        ("{{end}}", "unexpected {{end}}"),
        ("{{.Id", "unclosed action"),
        ("{{len .Nope}}", "len of nil"),
        ("{{.Id.Sub}}", "can't evaluate field Sub"),
    ],
)
def test_unsupported_templates_are_errors(template, message):
    with pytest.raises(TemplateError, match=message):
        render(template, DATA)
