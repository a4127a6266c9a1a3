"""Go's tabwriter layout and kubeadm's short durations, checked against kubeadm's own output."""

from __future__ import annotations

from kapal.kube.adm.tabular import short_human_duration, tabwrite


def test_columns_as_kubeadm_check_expiration_prints_them():
    out = tabwrite([
        "CERTIFICATE\tEXPIRES\tRESIDUAL TIME\tCERTIFICATE AUTHORITY\tEXTERNALLY MANAGED",
        f"admin.conf\tApr 01, 2024 16:06 UTC\t347d\tca\t{'no':<8}",
        f"apiserver-kubelet-client\tApr 01, 2024 16:06 UTC\t347d\tca\t{'no':<8}",
        "",
        "CERTIFICATE AUTHORITY\tEXPIRES\tRESIDUAL TIME\tEXTERNALLY MANAGED",
        f"ca\tMar 28, 2032 10:56 UTC\t8y\t{'no':<8}",
    ])
    assert out.splitlines() == [
        "CERTIFICATE                EXPIRES                  RESIDUAL TIME   CERTIFICATE AUTHORITY   "
        "EXTERNALLY MANAGED",
        "admin.conf                 Apr 01, 2024 16:06 UTC   347d            ca                      no      ",
        "apiserver-kubelet-client   Apr 01, 2024 16:06 UTC   347d            ca                      no      ",
        "",
        "CERTIFICATE AUTHORITY   EXPIRES                  RESIDUAL TIME   EXTERNALLY MANAGED",
        "ca                      Mar 28, 2032 10:56 UTC   8y              no      ",
    ]


def test_short_human_duration():
    cases = {-5: "<invalid>", -1: "0s", 0: "0s", 59: "59s", 60: "1m", 3599: "59m", 3600: "1h", 86399: "23h",
             86400: "1d", 364 * 86400: "364d", 365 * 86400: "1y", 3650 * 86400 + 3600: "10y"}
    for seconds, text in cases.items():
        assert short_human_duration(seconds) == text, seconds
