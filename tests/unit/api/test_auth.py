"""TokenBook: hashed tokens from YAML, roles to rights, constant-time lookup, strict file schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from triage.api.auth import (
    ROLE_RIGHTS,
    Principal,
    Right,
    Role,
    TokenBook,
    TokenEntry,
    hash_token,
    new_token,
)

REPO_ROOT = Path(__file__).resolve().parents[3]


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _entry(user: str, role: Role, token: str) -> TokenEntry:
    return TokenEntry(user=user, role=role, token_sha256=hash_token(token))


def test_hash_token_is_the_hex_sha256_of_the_utf8_token() -> None:
    assert hash_token("abc") == ("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")


def test_new_tokens_are_long_random_and_url_safe() -> None:
    tokens = {new_token() for _ in range(50)}
    assert len(tokens) == 50
    assert all(len(t) >= 43 and t.replace("-", "").replace("_", "").isalnum() for t in tokens)


def test_a_known_token_authenticates_as_its_user_and_role(tmp_path: Path) -> None:
    token = new_token()
    path = _write(
        tmp_path / "tokens.yaml",
        f"version: 1\ntokens:\n  - user: dr.who\n    role: radiologist\n"
        f"    token_sha256: {hash_token(token)}\n",
    )
    book = TokenBook.from_yaml(path)
    assert len(book) == 1
    assert book.authenticate(token) == Principal("dr.who", Role.RADIOLOGIST)
    assert book.authenticate(token + "x") is None
    assert book.authenticate("") is None
    assert book.authenticate(hash_token(token)) is None  # the hash itself is not a token


def test_every_entry_is_compared_so_the_last_one_matches_too() -> None:
    book = TokenBook([_entry(f"u{i}", Role.INTEGRATOR, f"token-{i}") for i in range(20)])
    assert book.authenticate("token-19") == Principal("u19", Role.INTEGRATOR)


def test_roles_grant_rights_from_one_table() -> None:
    radiologist = Principal("a", Role.RADIOLOGIST)
    integrator = Principal("b", Role.INTEGRATOR)
    admin = Principal("c", Role.ADMIN)
    assert radiologist.can(Right.REVIEW)
    assert not radiologist.can(Right.STORE)
    assert not radiologist.can(Right.ADMIN)
    assert integrator.can(Right.STORE)
    assert integrator.can(Right.READ)
    assert not integrator.can(Right.REVIEW)
    assert all(admin.can(r) for r in Right)
    assert set(ROLE_RIGHTS) == set(Role)


def test_the_example_tokens_file_is_valid_and_holds_one_user_per_role() -> None:
    book = TokenBook.from_yaml(REPO_ROOT / "configs" / "api_tokens.example.yaml")
    assert len(book) == 3


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (
            "tokens:\n  - user: a\n    role: nurse\n    token_sha256: " + "0" * 64,
            r"tokens\.0\.role",
        ),
        ("tokens:\n  - user: a\n    role: admin\n    token_sha256: abc", r"token_sha256"),
        ("tokens:\n  - user: a b\n    role: admin\n    token_sha256: " + "0" * 64, r"\.user"),
        ("tokens:\n  - user: a\n    role: admin\n    token: secret", r"token_sha256"),
        ("version: 2\n", r"version"),
        ("tokens: [unclosed", r"readable YAML"),
    ],
)
def test_a_malformed_tokens_file_is_refused_naming_the_field(
    tmp_path: Path, text: str, match: str
) -> None:
    path = _write(tmp_path / "tokens.yaml", text)
    with pytest.raises(ValueError, match=match):
        TokenBook.from_yaml(path)


def test_the_error_for_a_bad_file_never_echoes_a_token_value(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "t.yaml", "tokens:\n  - user: a\n    role: admin\n    token: s3cr3t-v4lue"
    )
    with pytest.raises(ValueError, match="schema") as info:
        TokenBook.from_yaml(path)
    assert "s3cr3t" not in str(info.value)


def test_a_missing_tokens_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match="tokens file must be readable YAML, got FileNotFoundError"
    ):
        TokenBook.from_yaml(tmp_path / "absent.yaml")


@pytest.mark.parametrize(
    ("entries", "match"),
    [
        ([("a", "t1"), ("b", "t1")], "token_sha256 values must be unique"),
        ([("a", "t1"), ("a", "t2")], r"user names must be unique.*\['a'\]"),
    ],
)
def test_duplicate_users_or_hashes_are_refused(entries: list[tuple[str, str]], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TokenBook([_entry(user, Role.ADMIN, token) for user, token in entries])
