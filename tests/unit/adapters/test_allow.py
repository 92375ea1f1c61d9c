"""The DICOM allow list: schema, matching of AE title + address, default deny."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from triage.adapters.pacs.allow import AllowList, load_allow_list


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "dicom_allow.yaml"
    path.write_text(text, encoding="utf-8")
    return path


SITE = """
version: 1
callers:
  - ae_title: PACS_MAIN
    hosts: [10.20.0.15, 10.30.0.0/16]
    description: hospital PACS
  - ae_title: CT2
    hosts: ["fd00:31:4::/64"]
"""


@pytest.fixture
def site(tmp_path: Path) -> AllowList:
    return load_allow_list(write(tmp_path, SITE))


def test_shipped_allow_list_parses_and_denies_everyone() -> None:
    allow = load_allow_list(REPO_ROOT / "configs" / "dicom_allow.yaml")
    assert allow.version == 1
    assert allow.callers == ()
    assert not allow.permits("ANY", "127.0.0.1")


def test_absent_file_denies_everyone_and_says_how_to_add_a_caller(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        allow = load_allow_list(tmp_path / "missing.yaml")
    assert not allow.permits("PACS_MAIN", "10.20.0.15")
    assert "every association is refused" in caplog.text
    assert "ae_title" in caplog.text
    assert "TRIAGE_DICOM_ALLOW_FILE" in caplog.text


def test_unset_path_denies_everyone() -> None:
    assert load_allow_list(None).callers == ()


def test_empty_file_denies_everyone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        allow = load_allow_list(write(tmp_path, "# nothing yet\n"))
    assert allow.callers == ()
    assert "is empty" in caplog.text


def test_listed_ae_from_a_listed_address_is_permitted(site: AllowList) -> None:
    assert site.permits("PACS_MAIN", "10.20.0.15")


def test_cidr_network_matches_inside_and_not_outside(site: AllowList) -> None:
    assert site.permits("PACS_MAIN", "10.30.255.1")
    assert not site.permits("PACS_MAIN", "10.31.0.1")
    assert not site.permits("PACS_MAIN", "10.20.0.16")  # a bare address is a /32


def test_ae_title_must_match_exactly_after_stripping_spaces(site: AllowList) -> None:
    assert site.permits("PACS_MAIN        ", "10.20.0.15")  # AE titles arrive space-padded
    assert site.permits("  PACS_MAIN", "10.20.0.15")
    assert not site.permits("pacs_main", "10.20.0.15")  # AE titles are case-sensitive
    assert not site.permits("PACS_MAIN2", "10.20.0.15")
    assert not site.permits("", "10.20.0.15")


def test_address_of_another_callers_entry_is_not_enough(site: AllowList) -> None:
    assert not site.permits("CT2", "10.20.0.15")
    assert not site.permits("PACS_MAIN", "fd00:31:4::9")


def test_ipv6_network_and_ipv4_mapped_addresses_match(site: AllowList) -> None:
    assert site.permits("CT2", "fd00:31:4::9")
    assert not site.permits("CT2", "fd00:31:5::9")
    assert site.permits("PACS_MAIN", "::ffff:10.20.0.15")  # IPv4 seen through an IPv6 socket


def test_unparseable_peer_address_is_never_permitted(site: AllowList) -> None:
    assert not site.permits("PACS_MAIN", "not-an-ip")
    assert not site.permits("PACS_MAIN", "")


def test_ae_title_is_stored_stripped(tmp_path: Path) -> None:
    allow = load_allow_list(
        write(tmp_path, "version: 1\ncallers: [{ae_title: ' PACS ', hosts: [127.0.0.1]}]\n")
    )
    assert allow.callers[0].ae_title == "PACS"
    assert allow.permits("PACS", "127.0.0.1")


def test_bad_yaml_raises_value_error_with_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\ncallers: [\n  - ae_title: X\n")
    with pytest.raises(ValueError, match=r"must be valid YAML, got an error at line \d+"):
        load_allow_list(path)


def test_host_bits_in_a_network_are_refused_with_the_network_meant(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\ncallers: [{ae_title: A, hosts: [10.0.1.5/24]}]\n")
    with pytest.raises(ValueError, match=r"callers\.0\.hosts\.0: .*did you mean 10\.0\.1\.0/24"):
        load_allow_list(path)


def test_hostname_instead_of_address_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\ncallers: [{ae_title: A, hosts: [pacs.local]}]\n")
    with pytest.raises(ValueError, match=r"host must be an IP address or CIDR network, got 'pacs"):
        load_allow_list(path)


def test_caller_without_hosts_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\ncallers: [{ae_title: A, hosts: []}]\n")
    with pytest.raises(ValueError, match=r"callers\.0\.hosts: .*at least 1"):
        load_allow_list(path)


@pytest.mark.parametrize(
    ("ae_title", "message"),
    [
        ("'   '", "not blank"),
        ("'A\\\\B'", "without backslash"),
        ("ABCDEFGHIJKLMNOPQ", "at most 16"),
    ],
)
def test_invalid_ae_title_is_refused(tmp_path: Path, ae_title: str, message: str) -> None:
    path = write(tmp_path, f"version: 1\ncallers: [{{ae_title: {ae_title}, hosts: [10.0.0.1]}}]\n")
    with pytest.raises(ValueError, match=rf"callers\.0\.ae_title: .*{message}"):
        load_allow_list(path)


def test_missing_version_and_unknown_keys_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "callers: []\nallow_all: true\n")
    with pytest.raises(ValueError, match=r"version: Field required.*allow_all: Extra inputs"):
        load_allow_list(path)


def test_a_list_instead_of_a_mapping_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "- ae_title: A\n")
    with pytest.raises(ValueError, match=r"DICOM allow list .* is invalid: .*dictionary"):
        load_allow_list(path)
