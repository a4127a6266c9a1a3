"""kubectl 1.32+ send typed-client bodies as protobuf; decoded, they equal what kubectl 1.31 sends as JSON.

Every command runs against the recording server twice: once with a protobuf-sending kubectl (1.33, else 1.32)
and once with a JSON-sending one (1.31, else 1.30). The decoded protobuf must equal the JSON body, apart from the
nulls Go's JSON encoder writes for zero timestamps.
"""

import pytest
from kubectl_recorder import KUBECTL_DIR, RecordingServer, ok_json

from kapal.kube.api import protobuf

COMMANDS = [
    "create namespace foo",
    "create configmap cm --from-literal=a=b --from-literal=empty=",
    "create secret generic s --from-literal=pw=hunter2 --type=Opaque",
    "create secret docker-registry reg --docker-server=r.example --docker-username=u --docker-password=p",
    "create deployment web --image=nginx:1.25 --replicas=0 --port=80",
    "create deployment web2 --image=nginx --image=busybox",
    "create service clusterip svc --tcp=80:8080",
    "create service nodeport np --tcp=80:8080 --node-port=30080",
    "create service externalname ext --external-name=example.com",
    "create job j --image=busybox -- echo hi",
    "create cronjob cj --image=busybox --schedule=*/5_*_*_*_* --restart=OnFailure -- date",
    "create serviceaccount sa",
    "create role r --verb=get,list --resource=pods,deployments.apps --resource-name=x",
    "create rolebinding rb --role=r --user=alice --serviceaccount=default:sa --group=devs",
    "create clusterrole cr --verb=get --non-resource-url=/healthz",
    "create clusterrolebinding crb --clusterrole=cr --user=bob",
    "create priorityclass pc --value=0 --description=zero --preemption-policy=Never",
    "create poddisruptionbudget pdb --selector=app=web --min-available=50%",
    "create poddisruptionbudget pdb2 --selector=app=web --max-unavailable=1",
    "create quota q --hard=cpu=1,memory=1G,pods=2 --scopes=NotTerminating",
    "create ingress ing --rule=foo.com/bar=svc:80,tls=sec --class=nginx --default-backend=def:http",
    "create token sa --duration=10m --audience=a",
    "auth can-i get pods -n kube-system",
    "auth can-i list deployments.apps/scale --subresource=scale",
    "auth can-i get /healthz",
    "auth whoami",
]


def _first_present(*versions):
    for v in versions:
        if (KUBECTL_DIR / f"kubectl.{v}").exists():
            return v
    pytest.skip(f"none of kubectl {', '.join(versions)} is installed")


def _answer(req):
    if req.method != "POST":
        return None
    obj = protobuf.decode(req.body) if req.body.startswith(protobuf.MAGIC) else req.json()
    obj.setdefault("metadata", {}).setdefault("name", "answered")
    status = {"SelfSubjectAccessReview": {"allowed": True},
              "SelfSubjectReview": {"userInfo": {"username": "me"}},
              "TokenRequest": {"token": "t", "expirationTimestamp": "2030-01-01T00:00:00Z"}}.get(obj["kind"])
    if status:
        obj["status"] = status
    return ok_json(obj, 201)


def _without_nulls(value):
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


@pytest.fixture(scope="module")
def bodies(tmp_path_factory):
    """{command: (protobuf body, JSON body)} captured from real kubectl."""
    proto_version = _first_present("1.33", "1.32")
    json_version = _first_present("1.31", "1.30")
    out = {}
    with RecordingServer(tmp_path_factory.mktemp("rec")) as server:
        server.handlers.append(_answer)
        for command in COMMANDS:
            args = [a.replace("_", " ") for a in command.split()]
            got = []
            for version in (proto_version, json_version):
                server.requests.clear()
                p = server.kubectl(version, *args)
                assert p.returncode == 0, f"kubectl {version} {command}: {p.stderr}"
                [post] = server.sent("POST")
                got.append(post)
            out[command] = tuple(got)
    return out


@pytest.mark.parametrize("command", COMMANDS)
def test_protobuf_body_equals_the_json_body(bodies, command):
    proto, as_json = bodies[command]
    assert proto.headers["content-type"] == protobuf.CONTENT_TYPE
    assert proto.body.startswith(protobuf.MAGIC)
    assert as_json.headers["content-type"] == "application/json"
    assert protobuf.decode(proto.body) == _without_nulls(as_json.json())


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.startswith("create") and "token" not in c])
def test_what_kubectl_creates_is_valid_after_defaulting(bodies, command):
    from kapal.kube.api.defaults import apply_defaults
    from kapal.kube.api.validation import validate
    from kapal.kube.meta.resources import by_kind

    obj = protobuf.decode(bodies[command][0].body)
    r = by_kind(obj["apiVersion"], obj["kind"])
    obj["metadata"]["uid"] = "0c9d7c9e-0000-4000-8000-000000000001"
    apply_defaults(r, obj)
    assert [str(c) for c in validate(r, obj)] == []
