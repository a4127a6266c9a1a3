"""Label and field selectors: parsed once, matched against many objects.

Label selectors come in two spellings that mean the same thing: the string
form of `?labelSelector=` (`app=web,tier!=db,env in (a,b),!legacy`) and the
`LabelSelector` object of specs (`matchLabels` + `matchExpressions`). Field
selectors (`?fieldSelector=`) only know `=`, `==` and `!=`, on the fields
each kind declares in FIELD_LABELS, as upstream's API server does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from kapal.errors import Invalid

_DNS = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_KEY = re.compile(rf"^({_DNS}/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@dataclass(frozen=True)
class Requirement:
    """One clause: key, an operator (in, notin, exists, !, =, ==, !=, gt, lt) and its values."""

    key: str
    op: str
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op in ("=", "==", "in"):
            return present and value in self.values
        if self.op in ("!=", "notin"):
            return not present or value not in self.values
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op in ("gt", "lt"):
            try:
                have, want = int(value or ""), int(self.values[0])
            except ValueError:
                return False
            return have > want if self.op == "gt" else have < want
        return False

    def __str__(self) -> str:
        if self.op == "exists":
            return self.key
        if self.op == "!":
            return "!" + self.key
        if self.op in ("in", "notin"):
            return f"{self.key} {self.op} ({','.join(self.values)})"
        if self.op in ("gt", "lt"):
            return f"{self.key}{'>' if self.op == 'gt' else '<'}{self.values[0]}"
        return f"{self.key}{self.op}{self.values[0]}"


@dataclass(frozen=True)
class LabelSelector:
    """A conjunction of requirements; empty matches everything, `nothing` matches nothing."""

    requirements: tuple[Requirement, ...] = ()
    nothing: bool = False

    def matches(self, labels: dict[str, str] | None) -> bool:
        if self.nothing:
            return False
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements and not self.nothing

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


EVERYTHING = LabelSelector()
NOTHING = LabelSelector(nothing=True)


def _check_key(key: str) -> None:
    name = key.rsplit("/", 1)[-1]
    if not _KEY.match(key) or len(name) > 63 or ("/" in key and len(key.split("/", 1)[0]) > 253):
        raise Invalid(f'unable to parse requirement: invalid label key "{key}": name part must consist of '
                      "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
                      "character")


def _check_value(value: str) -> None:
    if len(value) > 63 or not _VALUE.match(value):
        raise Invalid(f'unable to parse requirement: invalid label value: "{value}": must be 63 characters or '
                      "less and must be empty or begin and end with an alphanumeric character")


_TOKEN = re.compile(r"\s*(\(|\)|,|!=|==|=|!|>|<|[^\s(),!=<>]+)")


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse `?labelSelector=` syntax; raises Invalid with upstream's wording on bad input."""
    if text is None or not text.strip():
        return EVERYTHING
    tokens: list[str] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            if text[pos:].strip() == "":
                break
            raise Invalid(f"unable to parse requirement: found '{text[pos:]}'")
        tokens.append(m.group(1))
        pos = m.end()
    reqs: list[Requirement] = []
    i = 0

    def take() -> str:
        nonlocal i
        if i >= len(tokens):
            raise Invalid(f"unable to parse requirement: unexpected end of selector {text!r}")
        i += 1
        return tokens[i - 1]

    while i < len(tokens):
        tok = take()
        if tok == "!":
            key = take()
            _check_key(key)
            reqs.append(Requirement(key, "!"))
        else:
            key = tok
            _check_key(key)
            if i >= len(tokens) or tokens[i] == ",":
                reqs.append(Requirement(key, "exists"))
            else:
                op = take()
                if op in ("=", "==", "!="):
                    value = tokens[i] if i < len(tokens) and tokens[i] != "," else ""
                    if value:
                        i += 1
                    _check_value(value)
                    reqs.append(Requirement(key, op, (value,)))
                elif op in (">", "<"):
                    value = take()
                    try:
                        int(value)
                    except ValueError:
                        raise Invalid(f"unable to parse requirement: for 'Gt', 'Lt' operators, the value must be "
                                      f"an integer, got {value!r}") from None
                    reqs.append(Requirement(key, "gt" if op == ">" else "lt", (value,)))
                elif op in ("in", "notin"):
                    if take() != "(":
                        raise Invalid(f"unable to parse requirement: found '{tokens[i - 1]}', expected: '('")
                    values: list[str] = []
                    while True:
                        t = take()
                        if t == ")":
                            break
                        if t == ",":
                            if not values or values[-1] == "":
                                values.append("")
                            continue
                        _check_value(t)
                        values.append(t)
                    values = [v for v in values if v != ""] or [""]
                    reqs.append(Requirement(key, op, tuple(sorted(set(values)))))
                else:
                    raise Invalid(f"unable to parse requirement: found '{op}', expected: "
                                  "'=', '!=', '==', 'in', notin'")
        if i < len(tokens):
            if tokens[i] != ",":
                raise Invalid(f"unable to parse requirement: found '{tokens[i]}', expected: ','")
            i += 1
    return LabelSelector(tuple(reqs))


def label_selector_from_dict(spec: dict[str, Any] | None) -> LabelSelector:
    """Convert a metav1.LabelSelector object. None matches nothing; {} matches everything (as upstream)."""
    if spec is None:
        return NOTHING
    reqs: list[Requirement] = []
    for key, value in sorted((spec.get("matchLabels") or {}).items()):
        reqs.append(Requirement(key, "=", (str(value),)))
    for expr in spec.get("matchExpressions") or []:
        op = expr.get("operator")
        key = expr.get("key", "")
        values = tuple(expr.get("values") or ())
        if op == "In":
            reqs.append(Requirement(key, "in", values))
        elif op == "NotIn":
            reqs.append(Requirement(key, "notin", values))
        elif op == "Exists":
            reqs.append(Requirement(key, "exists"))
        elif op == "DoesNotExist":
            reqs.append(Requirement(key, "!"))
        else:
            raise Invalid(f'"{op}" is not a valid label selector operator')
    return LabelSelector(tuple(reqs))


# --- field selectors --------------------------------------------------------------------------------------------

_COMMON = ("metadata.name", "metadata.namespace")

# Field labels each kind supports beyond metadata.name/namespace, keyed by (storage group, plural).
FIELD_LABELS: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "pods"): ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
                   "spec.hostNetwork", "status.phase", "status.podIP", "status.podIPs", "status.nominatedNodeName"),
    ("", "events"): ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
                     "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
                     "reason", "reportingComponent", "source", "type"),
    ("", "secrets"): ("type",),
    ("", "nodes"): ("spec.unschedulable",),
    ("", "namespaces"): ("status.phase",),
    ("", "replicationcontrollers"): ("status.replicas",),
    ("", "services"): ("spec.clusterIP", "spec.type"),
    ("", "persistentvolumeclaims"): (),
    ("apps", "replicasets"): ("status.replicas",),
    ("batch", "jobs"): ("status.successful",),
    ("certificates.k8s.io", "certificatesigningrequests"): ("spec.signerName",),
}


def supported_field_labels(storage_key: tuple[str, str]) -> tuple[str, ...]:
    return _COMMON + FIELD_LABELS.get(storage_key, ())


def _dig(obj: dict[str, Any], path: str) -> Any:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def field_value(obj: dict[str, Any], label: str) -> str:
    """The string an object shows for a field label (absent fields read as "")."""
    if label == "status.podIPs":
        ips = (obj.get("status") or {}).get("podIPs") or []
        return ",".join(str(ip.get("ip", "")) for ip in ips)
    if label == "source":
        src = obj.get("source") or {}
        return str(src.get("component", "") or obj.get("reportingComponent", "") or "")
    value = _dig(obj, label)
    if value is None:
        if label == "spec.unschedulable" or label == "spec.hostNetwork":
            return "false"
        if label in ("status.replicas", "status.successful"):
            return "0"
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True)
class FieldSelector:
    requirements: tuple[Requirement, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, obj: dict[str, Any]) -> bool:
        for req in self.requirements:
            have = field_value(obj, req.key)
            if req.op == "!=":
                if have == req.values[0]:
                    return False
            elif have != req.values[0]:
                return False
        return True

    def exact(self, label: str) -> str | None:
        """The value an `=` clause pins a label to (lets callers narrow a lookup), else None."""
        for req in self.requirements:
            if req.key == label and req.op in ("=", "=="):
                return req.values[0]
        return None

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, cur, escaped = [], [], False
    for ch in text:
        if escaped:
            cur.append("\\" + ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def _unescape(text: str) -> str:
    out, escaped = [], False
    for ch in text:
        if escaped:
            if ch not in "\\,=!":
                raise Invalid(f"invalid field selector: invalid escape sequence \\{ch}")
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        else:
            out.append(ch)
    return "".join(out)


def parse_field_selector(text: str | None, storage_key: tuple[str, str] | None = None) -> FieldSelector:
    """Parse `?fieldSelector=`; with storage_key, unknown field labels are refused as upstream refuses them."""
    if text is None or not text.strip():
        return FieldSelector()
    reqs: list[Requirement] = []
    for clause in _split_unescaped(text, ","):
        if not clause.strip():
            continue
        m = re.match(r"^(.*?)(!=|==|=)(.*)$", clause)
        if not m or m.group(1).endswith("\\"):
            raise Invalid(f"invalid selector: '{text}'; can't understand '{clause}'")
        key, op, value = m.group(1).strip(), m.group(2), _unescape(m.group(3))
        if storage_key is not None and key not in supported_field_labels(storage_key):
            raise Invalid(f'field label not supported: {key}')
        reqs.append(Requirement(key, op, (value,)))
    return FieldSelector(tuple(reqs))
