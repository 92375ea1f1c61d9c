"""configs/pacs_nodes.yaml schema: one node per remote AE, consistent roles, secrets unechoed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from triage.adapters.pacs.flags import OrthancFlagTarget, make_flag_target
from triage.adapters.pacs.nodes import (
    AuthKind,
    FlagKind,
    PacsNode,
    QueryMethod,
    RetrieveMethod,
    load_nodes,
)

NODE = "{name: %s, ae_title: %s, host: 127.0.0.1, port: 4242%s}"


def write(tmp_path: Path, *nodes: str, version: int = 1) -> Path:
    path = tmp_path / "nodes.yaml"
    path.write_text(f"version: {version}\nnodes:\n" + "".join(f"  - {n}\n" for n in nodes))
    return path


def node(name: str = "pacs", ae: str = "PACS", extra: str = "") -> str:
    return NODE % (name, ae, extra)


def test_the_shipped_example_loads_with_every_role_of_the_orthanc_node() -> None:
    [main] = load_nodes(REPO_ROOT / "configs" / "pacs_nodes.yaml")
    assert (main.name, main.ae_title, main.port) == ("orthanc-main", "ORTHANC", 4242)
    assert main.send_to
    assert main.pull_from
    assert (main.query, main.retrieve, main.flag_target) == (
        QueryMethod.QIDO,
        RetrieveMethod.CMOVE,
        FlagKind.ORTHANC,
    )


def test_a_minimal_node_defaults_to_dimse_and_no_roles(tmp_path: Path) -> None:
    [pacs] = load_nodes(write(tmp_path, node()))
    assert (pacs.query, pacs.retrieve, pacs.flag_target) == (
        QueryMethod.CFIND,
        RetrieveMethod.CMOVE,
        FlagKind.NONE,
    )
    assert not pacs.send_to
    assert not pacs.pull_from
    assert pacs.auth.kind is AuthKind.NONE


def test_an_ae_title_longer_than_16_characters_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, node(ae="A" * 17))
    with pytest.raises(ValueError, match=r"nodes\.0\.ae_title: String should have at most 16"):
        load_nodes(path)


def test_an_ae_title_with_a_backslash_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, node(ae="'A\\B'"))
    with pytest.raises(ValueError, match=r"ae_title must be printable ASCII without backslash"):
        load_nodes(path)


def test_duplicate_node_names_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, node("pacs", "A"), node("pacs", "B"))
    with pytest.raises(ValueError, match=r"node names must be unique, got duplicates \['pacs'\]"):
        load_nodes(path)


def test_duplicate_ae_titles_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, node("a", "PACS"), node("b", "PACS"))
    with pytest.raises(ValueError, match=r"node ae_titles must be unique, got duplicates"):
        load_nodes(path)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (", query: qido", r"dicomweb_url must be set for query: qido"),
        (", retrieve: wado", r"dicomweb_url must be set for retrieve: wado"),
        (", send: stow", r"dicomweb_url must be set for send: stow"),
        (", flag_target: orthanc", r"rest_url must be set for flag_target: orthanc"),
        (", dicomweb_url: 'ftp://x/dicom-web'", r"dicomweb_url must be an http\(s\) URL"),
        (", retrieve: ftp", r"nodes\.0\.retrieve: Input should be 'wado', 'cmove' or 'cget'"),
        (", port: 70000", r"nodes\.0\.port: Input should be less than or equal to 65535"),
        (", colour: blue", r"nodes\.0\.colour: Extra inputs are not permitted"),
    ],
)
def test_inconsistent_roles_and_bad_fields_are_refused(
    tmp_path: Path, extra: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        load_nodes(write(tmp_path, node(extra=extra)))


def test_basic_auth_needs_a_password_and_errors_never_echo_it(tmp_path: Path) -> None:
    secret = "s3cret-value"
    missing = write(tmp_path, node(extra=", auth: {kind: basic, username: triage}"))
    with pytest.raises(ValueError, match=r"'basic' must come with username and password"):
        load_nodes(missing)
    bad = write(
        tmp_path,
        node(
            extra=f", flag_target: orthanc, auth: {{kind: basic, username: u, password: {secret}}}"
        ),
    )
    with pytest.raises(ValueError, match=r"rest_url must be set") as caught:
        load_nodes(bad)
    assert secret not in str(caught.value)


def test_a_loaded_password_is_hidden_when_the_node_prints(tmp_path: Path) -> None:
    extra = ", auth: {kind: bearer, token: tok-123}"
    [pacs] = load_nodes(write(tmp_path, node(extra=extra)))
    assert pacs.auth.token is not None
    assert pacs.auth.token.get_secret_value() == "tok-123"
    assert "tok-123" not in repr(pacs)


def test_a_file_that_is_not_yaml_names_only_the_line(tmp_path: Path) -> None:
    path = tmp_path / "nodes.yaml"
    path.write_text("version: 1\nnodes: [ {name: a, password: hunter2: x\n")
    with pytest.raises(
        ValueError, match=r"nodes file must be valid YAML, got an error at line"
    ) as e:
        load_nodes(path)
    assert "hunter2" not in str(e.value)


def test_a_missing_file_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"nodes file must be readable, got No such file"):
        load_nodes(tmp_path / "absent.yaml")


def test_version_is_required(tmp_path: Path) -> None:
    path = tmp_path / "nodes.yaml"
    path.write_text(f"nodes:\n  - {node()}\n")
    with pytest.raises(ValueError, match=r"version: Field required"):
        load_nodes(path)


def test_flag_targets_come_from_the_node_kind() -> None:
    orthanc = PacsNode(
        name="o",
        ae_title="O",
        host="h",
        port=1,
        rest_url="http://h:8042",
        flag_target=FlagKind.ORTHANC,
    )
    assert isinstance(make_flag_target(orthanc), OrthancFlagTarget)
    plain = PacsNode(name="p", ae_title="P", host="h", port=1)
    with pytest.raises(ValueError, match=r"flag_target must be one of \['orthanc'\], got 'none'"):
        make_flag_target(plain)
