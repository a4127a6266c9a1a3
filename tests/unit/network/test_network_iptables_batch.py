"""iptables-restore input: chains declared per table, arguments quoted as its tokenizer reads them."""

from __future__ import annotations

import pytest

from kapal.errors import Invalid
from kapal.network.iptables import RestoreBatch, _jump_target, _quote, _split_rule


def test_render_groups_by_table_and_declares_chains():
    batch = RestoreBatch()
    batch.chain("nat", "KAPAL-SVC")
    batch.append("nat", "KAPAL-SVC", "-d", "10.96.0.1/32", "-m", "comment", "--comment", "default/kubernetes: https",
                 "-j", "KAPAL-SEP")
    batch.append("filter", "KAPAL-FW", "-j", "ACCEPT")
    batch.delete_chain("nat", "KAPAL-OLD")
    assert batch.render() == (
        "*nat\n"
        ":KAPAL-SVC - [0:0]\n"
        ":KAPAL-OLD - [0:0]\n"
        '-A KAPAL-SVC -d 10.96.0.1/32 -m comment --comment "default/kubernetes: https" -j KAPAL-SEP\n'
        "-X KAPAL-OLD\n"
        "COMMIT\n"
        "*filter\n"
        "-A KAPAL-FW -j ACCEPT\n"
        "COMMIT\n"
    )


def test_empty_batch_is_false():
    assert not RestoreBatch()
    assert RestoreBatch().chain("nat", "X")


def test_builtin_chains_cannot_be_declared():
    with pytest.raises(Invalid, match="built-in"):
        RestoreBatch().chain("nat", "POSTROUTING")
    with pytest.raises(Invalid, match="unknown iptables table"):
        RestoreBatch().append("nope", "X", "-j", "ACCEPT")


def test_quoting_round_trips_through_the_save_format():
    for arg in ["plain", "with space", 'say "hi"', "back\\slash", ""]:
        assert _split_rule(f"-A X --comment {_quote(arg)}") == ["-A", "X", "--comment", arg]


def test_jump_target():
    assert _jump_target(["-A", "POSTROUTING", "-j", "KAPAL-POSTROUTING"]) == "KAPAL-POSTROUTING"
    assert _jump_target(["-A", "X", "-g", "Y"]) == "Y"
    assert _jump_target(["-A", "X", "-p", "tcp"]) is None
