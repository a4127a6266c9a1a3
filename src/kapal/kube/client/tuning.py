"""Process-wide settings for long-running components, applied once by a composition root (a CLI verb,
`kapal up`), never by library code.

asyncio gives every TLS connection a 256 KiB read buffer that fills with use. A controller manager holds one
watch connection per resource type (the garbage collector watches about 40), so those buffers alone cost
~23 MB of RSS; at 32 KiB (two TLS records per read) the same watches cost ~7 MB, with no measurable slowdown.
"""

from __future__ import annotations

TLS_READ_BUFFER = 32 * 1024


def trim_tls_read_buffers(size: int = TLS_READ_BUFFER) -> None:
    import asyncio.sslproto

    if getattr(asyncio.sslproto.SSLProtocol, "max_size", None) is not None:
        asyncio.sslproto.SSLProtocol.max_size = size
