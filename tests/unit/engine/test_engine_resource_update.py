"""docker update's rules: what a body may change, how it merges into the HostConfig (dockerd's conflicts
and words), and the resources handed to the runtime."""

from __future__ import annotations

import pytest

from kapal.engine import resource_update
from kapal.errors import Invalid, Unsupported

MB = 1 << 20
CLI_ZEROS = {"BlkioWeight": 0, "CpuShares": 0, "NanoCpus": 0, "CpuPeriod": 0, "CpuQuota": 0, "CpusetCpus": "",
             "CpusetMems": "", "Memory": 0, "MemorySwap": 0, "MemoryReservation": 0, "KernelMemory": 0,
             "CpuRealtimePeriod": 0, "Devices": None, "Ulimits": None, "RestartPolicy": {"Name": ""}}


def test_zero_fields_change_nothing_and_pids_limit_zero_or_less_is_unlimited():
    assert resource_update.requested(CLI_ZEROS) == {}
    assert resource_update.requested({**CLI_ZEROS, "PidsLimit": -1}) == {"PidsLimit": 0}
    assert resource_update.requested({**CLI_ZEROS, "Memory": 64 * MB, "CpusetCpus": "0"}) == \
        {"Memory": 64 * MB, "CpusetCpus": "0"}
    assert resource_update.requested({"MemorySwap": 64 * MB}) == {"MemorySwap": 64 * MB}  # unlike create


@pytest.mark.parametrize(("body", "words"), [
    ({"Memory": 4 * MB}, "Minimum memory limit allowed is 6MB"),
    ({"Memory": 64 * MB, "MemorySwap": 32 * MB}, "Minimum memoryswap limit should be larger than memory limit"),
    ({"MemoryReservation": MB}, "Minimum memory reservation allowed is 6MB"),
    ({"NanoCpus": 5_000_000}, "Range of CPUs is from 0.01"),
    ({"CpuQuota": 10}, "CPU cfs quota can not be less than 1ms"),
])
def test_bad_values_answer_as_dockerd(body, words):
    with pytest.raises(Invalid, match=words):
        resource_update.requested(body)


def test_fields_docker_update_does_not_apply_are_refused_by_name():
    with pytest.raises(Unsupported, match="KernelMemory"):
        resource_update.requested({**CLI_ZEROS, "KernelMemory": 64 * MB})


@pytest.mark.parametrize(("current", "changes", "words"), [
    ({"CpuPeriod": 100000}, {"NanoCpus": 10**9}, "Nano CPUs cannot be updated as CPU Period has already been set"),
    ({"CpuQuota": 50000}, {"NanoCpus": 10**9}, "Nano CPUs cannot be updated as CPU Quota has already been set"),
    ({"NanoCpus": 10**9}, {"CpuPeriod": 100000}, "CPU Period cannot be updated as NanoCPUs has already been set"),
    ({"NanoCpus": 10**9}, {"CpuQuota": 50000}, "CPU Quota cannot be updated as NanoCPUs has already been set"),
    ({"Memory": 64 * MB, "MemorySwap": 128 * MB}, {"Memory": 256 * MB}, "update the memoryswap at the same time"),
    ({}, {"Memory": 256 * MB}, "update the memoryswap at the same time"),
])
def test_conflicts_with_the_current_settings(current, changes, words):
    with pytest.raises(Invalid, match=words):
        resource_update.merge(current, changes)


def test_merge_keeps_the_rest_and_the_runtime_gets_the_merged_limits():
    current = {"Memory": 64 * MB, "MemorySwap": 128 * MB, "CpuShares": 512, "PidsLimit": 10, "Binds": ["/a:/b"]}
    merged = resource_update.merge(current, {"Memory": 100 * MB, "PidsLimit": 0})
    assert merged == {**current, "Memory": 100 * MB, "PidsLimit": 0} and current["Memory"] == 64 * MB
    res = resource_update.runtime_resources(merged, {"Memory": 100 * MB, "PidsLimit": 0})
    assert res["memory"]["limit"] == 100 * MB and res["cpu"] == {"shares": 512} and res["pids"] == {"limit": -1}
    assert "devices" not in res
