"""Bearer tokens: random, shown once, hashed at rest in an owner-only file; the CLI commands."""

from __future__ import annotations

import hashlib
import json
import os
import stat

import pytest

from backdoor_sweep.errors import SweepError
from backdoor_sweep.service.auth import TOKEN_PREFIX, Tokens
from tests.conftest import cli


def test_a_token_is_random_shown_once_and_only_its_hash_is_stored(tmp_path):
    tokens = Tokens(tmp_path / "svc" / "tokens.json")
    alice, bob = tokens.add("alice"), tokens.add("bob")
    assert alice.startswith(TOKEN_PREFIX) and len(alice) == len(TOKEN_PREFIX) + 43
    assert alice != bob
    text = tokens.path.read_text()
    assert alice not in text and bob not in text
    stored = json.loads(text)["tokens"]
    assert stored["alice"]["sha256"] == hashlib.sha256(alice.encode()).hexdigest()
    assert stat.S_IMODE(tokens.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(tokens.path.parent.stat().st_mode) == 0o700
    assert [t.name for t in tokens.list()] == ["alice", "bob"]
    assert tokens.list()[0].fingerprint == stored["alice"]["sha256"][:8]
    assert not [p for p in tokens.path.parent.iterdir() if p.name.startswith(".tmp-")]


def test_who_knows_valid_tokens_only_and_a_revoke_counts_at_once(tmp_path):
    tokens = Tokens(tmp_path / "tokens.json")
    alice = tokens.add("alice")
    bob = tokens.add("bob")
    assert tokens.who(alice) == "alice" and tokens.who(bob) == "bob"
    for bad in (None, "", alice + "x", alice[:-1], "bsw_" + "A" * 43, "x" * 10_000):
        assert tokens.who(bad) is None
    Tokens(tokens.path).revoke("alice")  # another process (the CLI) edits the file
    assert tokens.who(alice) is None and tokens.who(bob) == "bob"
    with pytest.raises(
        SweepError, match=r"token name must be one of the tokens \(bob\); got 'alice'"
    ):
        tokens.revoke("alice")


def test_names_are_checked_and_unique(tmp_path):
    tokens = Tokens(tmp_path / "tokens.json")
    tokens.add("carol@lab")
    with pytest.raises(SweepError, match="already has a token"):
        tokens.add("carol@lab")
    for bad in ("", "../x", "a b", "-x", "x" * 65):
        with pytest.raises(SweepError, match="token name must be"):
            tokens.add(bad)


def test_a_token_file_others_can_read_is_refused_and_fails_closed(tmp_path):
    tokens = Tokens(tmp_path / "tokens.json")
    alice = tokens.add("alice")
    os.chmod(tokens.path, 0o644)
    with pytest.raises(
        SweepError, match=r"must be readable by its owner only \(chmod 600\); got mode 0644"
    ):
        tokens.list()
    assert Tokens(tokens.path).who(alice) is None  # the server refuses everyone meanwhile
    os.chmod(tokens.path, 0o600)
    assert Tokens(tokens.path).who(alice) == "alice"


def test_a_corrupt_token_file_is_named(tmp_path):
    path = tmp_path / "tokens.json"
    path.write_text("not json")
    os.chmod(path, 0o600)
    with pytest.raises(SweepError, match=f"tokens file {path} is corrupt"):
        Tokens(path).list()


@pytest.mark.slow
def test_token_commands(tmp_path, cli_env):
    store = tmp_path / "store"
    added = cli("token", "add", "dave", "--store", str(store), env=cli_env)
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip()
    assert token.startswith(TOKEN_PREFIX) and "\n" not in token
    assert "shown once" in added.stderr
    path = store / ".service" / "tokens.json"
    assert token not in path.read_text() and stat.S_IMODE(path.stat().st_mode) == 0o600
    listed = cli("token", "list", "--store", str(store), env=cli_env)
    assert listed.returncode == 0 and listed.stdout.startswith("dave\tcreated ")
    assert token not in listed.stdout
    again = cli("token", "add", "dave", "--store", str(store), env=cli_env)
    assert again.returncode == 2
    assert again.stderr.strip() == (
        "error: token name must be new; 'dave' already has a token (revoke it first)"
    )
    revoked = cli("token", "revoke", "dave", "--store", str(store), env=cli_env)
    assert revoked.returncode == 0 and Tokens(path).list() == []
