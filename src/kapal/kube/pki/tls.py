"""TLS client contexts that trust exactly what they are told: a cluster's CA, or (insecure) nothing checked.

Never the system's store as a side effect: `ssl.create_default_context()` followed by `load_verify_locations`
parses the whole system bundle first (~20 ms of CPU per context, and `kapal up` makes dozens), and client-go
trusts only the kubeconfig's CA when it names one.
"""

from __future__ import annotations

import ssl


def client_context(ca_pem: bytes | None = None, *, verify: bool = True) -> ssl.SSLContext:
    """Verify the server against `ca_pem` (else the system store); verify=False checks nothing."""
    if not verify:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    if ca_pem:
        return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=ca_pem.decode())
    return ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
