"""Dockerfile-style `--change` instructions for import and commit (CMD, ENV, …) applied to an image config."""

from __future__ import annotations

import json
import shlex

from kapal.errors import Invalid, Unsupported

SUPPORTED = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "HEALTHCHECK", "LABEL", "ONBUILD", "STOPSIGNAL", "USER", "VOLUME",
             "WORKDIR")


def _exec_form(rest: str) -> list[str]:
    rest = rest.strip()
    if rest.startswith("["):
        try:
            value = json.loads(rest)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return ["/bin/sh", "-c", rest]


def _pairs(rest: str) -> list[tuple[str, str]]:
    words = shlex.split(rest)
    if words and "=" not in words[0]:
        key, _, value = rest.strip().partition(" ")
        return [(key, value.strip())]
    out = []
    for word in words:
        if "=" not in word:
            raise Invalid(f"invalid change: {rest!r}: expected KEY=VALUE pairs")
        k, _, v = word.partition("=")
        out.append((k, v))
    return out


def apply_changes(config: dict, changes: list[str]) -> dict:
    """Returns a new container config (the image config's `config` object) with the changes applied."""
    out = json.loads(json.dumps(config or {}))
    for change in changes:
        change = change.strip()
        if not change:
            continue
        op, _, rest = change.partition(" ")
        op = op.upper()
        if op not in SUPPORTED:
            raise Unsupported(f"{op} is not a valid change command (supported: {', '.join(SUPPORTED)})")
        if op == "CMD":
            out["Cmd"] = _exec_form(rest)
        elif op == "ENTRYPOINT":
            out["Entrypoint"] = _exec_form(rest)
        elif op == "ENV":
            env = [e for e in out.get("Env") or []]
            for key, value in _pairs(rest):
                env = [e for e in env if e.split("=", 1)[0] != key] + [f"{key}={value}"]
            out["Env"] = env
        elif op == "LABEL":
            labels = dict(out.get("Labels") or {})
            labels.update(_pairs(rest))
            out["Labels"] = labels
        elif op == "EXPOSE":
            ports = dict(out.get("ExposedPorts") or {})
            for p in rest.split():
                ports[p if "/" in p else f"{p}/tcp"] = {}
            out["ExposedPorts"] = ports
        elif op == "VOLUME":
            vols = dict(out.get("Volumes") or {})
            paths = json.loads(rest) if rest.strip().startswith("[") else rest.split()
            for p in paths:
                vols[p] = {}
            out["Volumes"] = vols
        elif op == "WORKDIR":
            out["WorkingDir"] = rest.strip()
        elif op == "USER":
            out["User"] = rest.strip()
        elif op == "STOPSIGNAL":
            out["StopSignal"] = rest.strip()
        elif op == "HEALTHCHECK":
            from .health import parse_instruction

            out["Healthcheck"] = parse_instruction(rest)
        elif op == "ONBUILD":
            out["OnBuild"] = [*(out.get("OnBuild") or []), rest.strip()]
    return out
