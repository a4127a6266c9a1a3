"""`kapal rootfs busybox DIR` and `kapal rootfs from-host DIR PROGRAM...`: root filesystems without a network."""

from __future__ import annotations

import sys

from kapal.errors import KapalError

USAGE = """Usage:
  kapal rootfs busybox DIR                 busybox-static with relative applet links
  kapal rootfs from-host DIR PROGRAM...    programs from the host plus every library ldd names
"""


def main(argv: list[str]) -> int:
    args = argv[1:]
    if not args or args[0] in ("-h", "--help"):
        print(USAGE.rstrip())
        return 0 if args else 1
    from kapal.runtime import minimal_rootfs

    try:
        if args[0] == "busybox" and len(args) == 2:
            minimal_rootfs.busybox_rootfs(args[1])
        elif args[0] == "from-host" and len(args) >= 3:
            minimal_rootfs.host_programs_rootfs(args[1], args[2:])
        else:
            print(USAGE.rstrip(), file=sys.stderr)
            return 1
    except KapalError as e:
        print(f"kapal rootfs: {e}", file=sys.stderr)
        return 1
    return 0
