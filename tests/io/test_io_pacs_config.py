"""The PACS config: where it is read from, and clear errors naming the file."""

from __future__ import annotations

import pytest

from napari_wsseg.io.pacs import Pacs, _date_filter, config_path, load_config


def test_config_from_env_with_password_from_another_variable(tmp_path, monkeypatch):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "pacs:\n  default: b\n  servers:\n"
        "    a: {url: 'https://a.example/dicom-web'}\n"
        "    b: {url: 'https://b.example/dw', username: bob, password_env: PW_B,\n"
        "        ca_bundle: /etc/ca.pem, timeout: 5}\n"
    )
    monkeypatch.setenv("WSSEG_CONFIG", str(cfg))
    monkeypatch.setenv("PW_B", "hunter2")
    assert config_path() == cfg
    b = load_config()
    assert (b.name, b.url, b.username, b.password, b.timeout) == (
        "b",
        "https://b.example/dw",
        "bob",
        "hunter2",
        5,
    )
    assert "hunter2" not in repr(b) and "b.example" not in repr(b)
    session = Pacs(b).client._session
    assert session.auth == ("bob", "hunter2") and session.verify == "/etc/ca.pem"
    assert load_config("a").username is None


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("pacs: {}\n", "no 'pacs: servers:' entries"),
        ("pacs:\n  servers:\n    a: {url: x}\n    b: {url: y}\n", "no 'default'"),
        ("pacs:\n  servers:\n    a: {user: x}\n", "has no url"),
        ("pacs:\n  servers:\n    a: {url: x, passwd: y}\n", r"unknown key\(s\) \['passwd'\]"),
        ("pacs:\n  servers:\n    a: {url: x, password_env: NOPE_UNSET}\n", r"\$NOPE_UNSET"),
        ("pacs: [\n", "not valid YAML"),
    ],
)
def test_bad_configs_name_the_file(tmp_path, text, match):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    with pytest.raises(ValueError, match=match) as err:
        load_config(path=cfg)
    assert str(cfg) in str(err.value)


def test_missing_config_and_unknown_server(tmp_path):
    with pytest.raises(FileNotFoundError, match="no PACS config"):
        load_config(path=tmp_path / "none.yaml")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("pacs:\n  servers:\n    a: {url: x}\n")
    with pytest.raises(KeyError, match="no PACS server 'z'"):
        load_config("z", cfg)


def test_dates_and_ranges():
    assert _date_filter("2026-11-03") == "20261103"
    assert _date_filter("20261101-20261130") == "20261101-20261130"
    assert _date_filter("2026-11-01-2026-11-30") == "20261101-20261130"
    with pytest.raises(ValueError, match="expected YYYYMMDD"):
        _date_filter("yesterday")
