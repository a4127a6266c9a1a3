"""Protobuf request bodies decode to the same JSON object kubectl would have sent as JSON.

The byte strings are what kubectl 1.33 sent to a recording server (tests/integration/api/
test_kubectl_wire_protobuf.py captures them live and compares with kubectl 1.31's JSON for the same command).
"""

import pytest

from kapal.errors import Invalid
from kapal.kube.api import protobuf

FIELD_NOTES_NAMESPACE = b"k8s\x00\n\x0f\n\x02v1\x12\tNamespace\x12\x0f\n\r\n\x03fooZ\x06\n\x01a\x12\x01b"

# kubectl 1.33: create deployment web --image=nginx:1.25 --replicas=0 --port=80
DEPLOYMENT = (
    b'k8s\x00\n\x15\n\x07apps/v1\x12\nDeployment\x12\xbd\x01\n\x1f\n\x03web\x12\x00\x1a\x00"\x00*\x002\x008\x00B'
    b'\x00Z\n\n\x03app\x12\x03web\x12\x8b\x01\x08\x00\x12\x0c\n\n\n\x03app\x12\x03web\x1aq\n\x1c\n\x00\x12\x00'
    b'\x1a\x00"\x00*\x002\x008\x00B\x00Z\n\n\x03app\x12\x03web\x12Q\x123\n\x05nginx\x12\nnginx:1.25*\x002\n\n'
    b'\x00\x10\x00\x18P"\x00*\x00B\x00j\x00r\x00\x80\x01\x00\x88\x01\x00\x90\x01\x00\xa2\x01\x00\x1a\x002\x00B'
    b'\x00J\x00R\x00X\x00`\x00h\x00\x82\x01\x00\x8a\x01\x00\x9a\x01\x00\xc2\x01\x00"\x02\n\x00(\x008\x00\x1a\x0c'
    b'\x08\x00\x10\x00\x18\x00 \x00(\x008\x00\x1a\x00"\x00'
)
# kubectl 1.33: create secret generic s --from-literal=pw=hunter2 --type=Opaque
SECRET = (b'k8s\x00\n\x0c\n\x02v1\x12\x06Secret\x12*\n\x11\n\x01s\x12\x00\x1a\x00"\x00*\x002\x008\x00B\x00\x12\r'
          b'\n\x02pw\x12\x07hunter2\x1a\x06Opaque\x1a\x00"\x00')
# kubectl 1.33: create priorityclass pc --value=0 --description=zero --preemption-policy=Never
PRIORITY_CLASS = (b'k8s\x00\n%\n\x14scheduling.k8s.io/v1\x12\rPriorityClass\x12%\n\x12\n\x02pc\x12\x00\x1a\x00"'
                  b'\x00*\x002\x008\x00B\x00\x10\x00\x18\x00"\x04zero*\x05Never\x1a\x00"\x00')
# kubectl 1.33: create poddisruptionbudget pdb --selector=app=web --min-available=50%
PDB = (b'k8s\x00\n \n\tpolicy/v1\x12\x13PodDisruptionBudget\x12<\n\x13\n\x03pdb\x12\x00\x1a\x00"\x00*\x002\x008'
       b'\x00B\x00\x12\x19\n\t\x08\x01\x10\x00\x1a\x0350%\x12\x0c\n\n\n\x03app\x12\x03web\x1a\n\x08\x00\x18\x00 '
       b'\x00(\x000\x00\x1a\x00"\x00')
# kubectl 1.33: create ingress ing --rule=foo.com/bar=svc:80,tls=sec --class=nginx --default-backend=def:http
INGRESS = (b'k8s\x00\n\x1f\n\x14networking.k8s.io/v1\x12\x07Ingress\x12r\n\x13\n\x03ing\x12\x00\x1a\x00"\x00*'
           b'\x002\x008\x00B\x00\x12W\n\x11"\x0f\n\x03def\x12\x08\n\x04http\x10\x00\x12\x0e\n\x07foo.com\x12\x03'
           b'sec\x1a+\n\x07foo.com\x12 \n\x1e\n\x1c\n\x04/bar\x12\r"\x0b\n\x03svc\x12\x04\n\x00\x10P\x1a\x05Exact"'
           b'\x05nginx\x1a\x02\n\x00\x1a\x00"\x00')
# kubectl 1.33: create token sa --duration=10m --audience=a
TOKEN_REQUEST = (b'k8s\x00\n(\n\x18authentication.k8s.io/v1\x12\x0cTokenRequest\x12 \n\x10\n\x00\x12\x00\x1a\x00'
                 b'"\x00*\x002\x008\x00B\x00\x12\x06\n\x01a \xd8\x04\x1a\x04\n\x00\x12\x00\x1a\x00"\x00')
# kubectl 1.33: auth can-i get pods -n kube-system
ACCESS_REVIEW = (b'k8s\x00\n2\n\x17authorization.k8s.io/v1\x12\x17SelfSubjectAccessReview\x12@\n\x10\n\x00\x12'
                 b'\x00\x1a\x00"\x00*\x002\x008\x00B\x00\x12"\n \n\x0bkube-system\x12\x03get\x1a\x00"\x00*\x04pods2'
                 b'\x00:\x00\x1a\x08\x08\x00\x12\x00\x1a\x00 \x00\x1a\x00"\x00')


@pytest.mark.parametrize("body, expected", [
    (FIELD_NOTES_NAMESPACE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "foo",
                                                                                     "labels": {"a": "b"}}}),
    (DEPLOYMENT, {"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": "web", "labels": {"app": "web"}},
                  "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                           "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                               {"name": "nginx", "image": "nginx:1.25", "ports": [{"containerPort": 80}],
                                "resources": {}}]}},
                           "strategy": {}},
                  "status": {}}),
    (SECRET, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"pw": "aHVudGVyMg=="},
              "type": "Opaque"}),
    (PRIORITY_CLASS, {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "pc"},
                      "value": 0, "description": "zero", "preemptionPolicy": "Never"}),
    (PDB, {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "pdb"},
           "spec": {"minAvailable": "50%", "selector": {"matchLabels": {"app": "web"}}},
           "status": {"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0}}),
    (INGRESS, {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "ing"},
               "spec": {"defaultBackend": {"service": {"name": "def", "port": {"name": "http"}}},
                        "tls": [{"hosts": ["foo.com"], "secretName": "sec"}],
                        "rules": [{"host": "foo.com", "http": {"paths": [
                            {"path": "/bar", "backend": {"service": {"name": "svc", "port": {"number": 80}}},
                             "pathType": "Exact"}]}}],
                        "ingressClassName": "nginx"},
               "status": {"loadBalancer": {}}}),
    (TOKEN_REQUEST, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "metadata": {},
                     "spec": {"audiences": ["a"], "expirationSeconds": 600}, "status": {"token": ""}}),
    (ACCESS_REVIEW, {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "metadata": {},
                     "spec": {"resourceAttributes": {"namespace": "kube-system", "verb": "get",
                                                     "resource": "pods"}},
                     "status": {"allowed": False}}),
], ids=["namespace", "deployment", "secret", "priorityclass", "pdb", "ingress", "tokenrequest", "ssar"])
def test_kubectl_bodies_decode_to_their_json_form(body, expected):
    assert protobuf.decode(body) == expected


def _envelope(api_version: bytes, kind: bytes, raw: bytes) -> bytes:
    from kapal.kube.api.protowire import Writer

    type_meta = Writer().raw(1, api_version).raw(2, kind)
    return protobuf.MAGIC + Writer().message(1, type_meta).raw(2, raw).getvalue()


def test_special_types_time_quantity_int_or_string_and_raw_json():
    from kapal.kube.api.protowire import Writer

    created = Writer().varint(1, 1700000000)
    meta = Writer().string(1, "p").message(8, created).message(17, Writer().string(1, "kubectl").message(
        7, Writer().raw(1, b'{"f:metadata":{}}')))
    limits = Writer().string(1, "cpu").message(2, Writer().string(1, "500m"))
    container = (Writer().string(1, "c").string(2, "img")
                 .message(8, Writer().message(1, limits))
                 .message(10, Writer().message(1, Writer().message(  # livenessProbe.handler.httpGet
                     2, Writer().string(1, "/healthz").message(2, Writer().varint(1, 1).string(3, "http"))))))
    spec = Writer().message(2, container).varint(4, 0)  # terminationGracePeriodSeconds=0 is a pointer: kept
    body = _envelope(b"v1", b"Pod", Writer().message(1, meta).message(2, spec).getvalue())
    pod = protobuf.decode(body)
    assert pod["metadata"]["creationTimestamp"] == "2023-11-14T22:13:20Z"
    assert pod["metadata"]["managedFields"] == [{"manager": "kubectl", "fieldsV1": {"f:metadata": {}}}]
    c = pod["spec"]["containers"][0]
    assert c["resources"] == {"limits": {"cpu": "500m"}}
    assert c["livenessProbe"] == {"httpGet": {"path": "/healthz", "port": "http"}}
    assert pod["spec"]["terminationGracePeriodSeconds"] == 0


def test_negative_int32_and_packed_repeated_numbers():
    from kapal.kube.api.protowire import Writer, encode_varint

    # A Pod's securityContext.supplementalGroups (int64s, here packed) and a negative int32 containerPort.
    groups = b"".join(encode_varint(v) for v in (1, 2, 3))
    spec = Writer().message(14, Writer().raw(4, groups))
    pod = protobuf.decode(_envelope(b"v1", b"Pod", Writer().message(2, spec).getvalue()))
    assert pod["spec"]["securityContext"]["supplementalGroups"] == [1, 2, 3]
    port = Writer().varint(3, 2**64 - 5)  # containerPort = -5, sent as a 10-byte varint
    container = Writer().string(1, "c").message(6, port)
    pod = protobuf.decode(_envelope(b"v1", b"Pod", Writer().message(2, Writer().message(2, container)).getvalue()))
    assert pod["spec"]["containers"][0]["ports"] == [{"containerPort": -5}]


def test_delete_options_keep_a_zero_grace_period():
    from kapal.kube.api.protowire import Writer

    raw = Writer().varint(1, 0).string(4, "Background").getvalue()
    for api_version in (b"v1", b"meta.k8s.io/v1", b"apps/v1"):
        assert protobuf.decode(_envelope(api_version, b"DeleteOptions", raw))["gracePeriodSeconds"] == 0


@pytest.mark.parametrize("body, message", [
    (b'{"kind":"Namespace"}', "magic"),
    (b"k8s\x00\n\x04\n\x02v1", "names no kind"),
    (b"k8s\x00\n\x0f\n\x02v1\x12\tNamespace\x12\x0f\n\r\n\x03foo", "claims"),
    (b"k8s\x00\n\x0c\n\x02v1\x12\x06Widget\x12\x00", "no kind 'Widget'"),
    (b"k8s\x00\n\x0f\n\x02v1\x12\tNamespace\x12\x02\x08\x05", "wire type varint, expected length-delimited"),
    (b"k8s\x00\n\x0f\n\x02v1\x12\tNamespace\x12\x06\n\x04\n\x02\xff\xfe", "UTF-8"),
    (b"k8s\x00\n\x0f\n\x02v1\x12\tNamespace\x12\x02\n\x00\x1a\x04gzip", "content encoding"),
])
def test_malformed_bodies_raise_invalid(body, message):
    with pytest.raises(Invalid, match=message):
        protobuf.decode(body)
