"""`docker update` of a container's resources, with dockerd's rules: what a request may change, how it
merges into the HostConfig, and the linux.resources the runtime applies to a live container.

A zero value leaves a setting as it is (the docker CLI sends every field); PidsLimit 0 or below means
unlimited. The request is checked as at create (6 MB minimum, swap ≥ memory, CPU ranges …) except that
swap may come without memory; then against the container: --cpus cannot replace a period/quota already
set (nor the reverse), and memory above the swap limit already set needs a new swap limit with it.
Fields Docker's update ignores are refused by name when set, never dropped silently.
"""

from __future__ import annotations

from kapal.errors import Invalid, Unsupported

from . import hostconfig

UPDATABLE = ("BlkioWeight", "CpuShares", "NanoCpus", "CpuPeriod", "CpuQuota", "CpusetCpus", "CpusetMems", "Memory",
             "MemorySwap", "MemoryReservation", "PidsLimit")


def requested(body: dict) -> dict:
    """The resource changes a `POST /containers/ID/update` body asks for, checked as dockerd checks them."""
    refused = sorted(k for k, v in body.items()
                     if k not in UPDATABLE and k != "RestartPolicy" and v not in hostconfig.ZERO_VALUES)
    if refused:
        raise Unsupported(f"docker update of {', '.join(refused)} is not supported by kapal (resources: "
                          "--memory --memory-swap --memory-reservation --cpus --cpu-shares --cpu-period --cpu-quota "
                          "--cpuset-cpus --cpuset-mems --pids-limit --blkio-weight; and --restart)")
    changes: dict = {}
    for key in UPDATABLE:
        value = body.get(key)
        if key == "PidsLimit":
            if value is not None:
                changes[key] = max(int(value), 0)
        elif value not in (None, 0, ""):
            changes[key] = value if key.startswith("Cpuset") else int(value)
    hostconfig.validate_resources(changes, update=True)
    return changes


def merge(current: dict, changes: dict) -> dict:
    """The HostConfig with the changes applied (a new dict), or Invalid with dockerd's words."""
    if changes.get("NanoCpus") and current.get("CpuPeriod"):
        raise Invalid("Conflicting options: Nano CPUs cannot be updated as CPU Period has already been set")
    if changes.get("NanoCpus") and current.get("CpuQuota"):
        raise Invalid("Conflicting options: Nano CPUs cannot be updated as CPU Quota has already been set")
    if changes.get("CpuPeriod") and current.get("NanoCpus"):
        raise Invalid("Conflicting options: CPU Period cannot be updated as NanoCPUs has already been set")
    if changes.get("CpuQuota") and current.get("NanoCpus"):
        raise Invalid("Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been set")
    if changes.get("Memory") and not changes.get("MemorySwap") \
            and changes["Memory"] > int(current.get("MemorySwap") or 0):
        raise Invalid("Memory limit should be smaller than already set memoryswap limit, update the memoryswap "
                      "at the same time")
    merged = dict(current)
    merged.update(changes)
    return merged


def runtime_resources(hc: dict, changes: dict) -> dict:
    """linux.resources for the runtime's update: the merged HostConfig's CPU, memory, pids and blkio weight
    (device rules and per-device throttles stay as they are)."""
    out = hostconfig.resources({k: v for k, v in hc.items() if not k.startswith("BlkioDevice")}, [])
    out.pop("devices", None)
    if changes.get("PidsLimit") == 0:
        out["pids"] = {"limit": -1}
    return out
