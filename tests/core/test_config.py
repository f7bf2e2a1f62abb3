"""Configuration: every key checked, errors name the key and the allowed values."""

from __future__ import annotations

import re

import pytest

from dvsd import config


def test_defaults():
    settings = config.load(None)
    assert settings.node_id == 0
    assert settings.gcs.transport is config.Transport.SINGLE_NODE
    assert settings.gcs.group == "DVS"
    assert (settings.msgq.request_key, settings.msgq.reply_key) == (7000, 7001)
    assert settings.member_name == "node.0"


def test_full_file(tmp_path):
    path = tmp_path / "dvsd.toml"
    path.write_text(
        'node_id = 4\n[gcs]\ntransport = "spread"\ndaemon = "4803@10.0.0.1"\n'
        'group = "CLUSTER"\n[msgq]\nrequest_key = 100\nreply_key = 101\n'
        '[requests]\ntimeout = 2\n[scripts]\njoin = "/bin/true"\n'
        "[cluster]\nnodes = [0, 1, 2, 3, 4]\ndcs = [0]\n"
    )
    settings = config.load(path)
    assert settings.node_id == 4
    assert settings.gcs.daemon == "4803@10.0.0.1"
    assert settings.requests.timeout == 2.0
    assert settings.scripts.join == ("/bin/true",)
    assert settings.cluster.nodes == (0, 1, 2, 3, 4)


@pytest.mark.parametrize(
    ("text", "sentence"),
    [
        (
            '[gcs]\ntransport = "tcp"',
            'gcs.transport must be one of "spread", "single-node"',
        ),
        ("node_id = -1", "node_id must be in 0..31"),
        # the DVK has 32 node slots: node 99 could never be brought up
        ("node_id = 32", "node_id must be in 0..31 (the DVK has 32 node slots)"),
        ("[cluster]\nnodes = [0, 1, 999]", "cluster.nodes must hold ids in 0..31"),
        ("[cluster]\ndcs = [-1, 3, 500]", "ids in 0..31, got [-1, 500]"),
        ("node_id = 'a'", "node_id must be an integer"),
        ("[msgq]\nrequest_key = 5\nreply_key = 5", "must differ"),
        ("[requests]\ntimeout = 0", "requests.timeout must be a number of seconds in"),
        ('[gcs]\ngroup = "has space"', "gcs.group must be 1..31 printable"),
        ("[gcs]\nport = 1", "unknown key gcs.port"),
        ("colour = 1", "unknown key colour"),
        ("[cluster]\nnodes = ['a']", "cluster.nodes must hold int values"),
        ("node_id = ", "not valid TOML"),
        ("[host]\ncomand = 'any'", "[host] has unknown key comand"),
    ],
)
def test_bad_files_name_the_key(tmp_path, text, sentence):
    path = tmp_path / "bad.toml"
    path.write_text(text + "\n")
    with pytest.raises(config.ConfigError, match=re.escape(sentence)) as caught:
        config.load(path)
    assert str(path) in str(caught.value)
    assert "[host]: [host]" not in str(caught.value)


def test_missing_file(tmp_path):
    with pytest.raises(config.ConfigError, match="no such file"):
        config.load(tmp_path / "absent.toml")


@pytest.mark.parametrize(
    ("text", "sentence"),
    [
        (
            "[requests]\ntimeout = inf",
            "requests.timeout must be a number of seconds in",
        ),
        (
            "[requests]\ntimeout = nan",
            "requests.timeout must be a number of seconds in",
        ),
        (
            "[requests]\ntimeout = 1e12",
            "requests.timeout must be a number of seconds in",
        ),
        ('[gcs]\ntransport = "spread"\ndaemon = "nonsense"', "key gcs.daemon must be"),
        ('[gcs]\ntransport = "spread"\ndaemon = "99999@h"', "key gcs.daemon must be"),
        ("[msgq]\nmode = 999999", "got 0o3641077"),
    ],
)
def test_values_that_parse_but_cannot_work(tmp_path, text, sentence):
    path = tmp_path / "bad.toml"
    path.write_text(text + "\n")
    with pytest.raises(config.ConfigError) as caught:
        config.load(path)
    assert sentence in str(caught.value)
