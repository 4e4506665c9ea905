"""The secrets `make run` generates into var/: never readable by others, not even for a moment."""

import os
import stat
from pathlib import Path

import pytest

from devstack import stack


class Killed(Exception):
    """The process dies here."""


@pytest.fixture
def var_dir(monkeypatch, tmp_path):
    monkeypatch.setattr(stack, "VAR_DIR", tmp_path)
    previous = os.umask(0o022)  # the usual umask: files are born readable by everyone
    yield tmp_path
    os.umask(previous)


def modes(folder: Path) -> dict[str, int]:
    return {path.name: stat.S_IMODE(path.stat().st_mode) for path in folder.iterdir()}


def test_secret_files_are_born_mode_600_so_dying_before_any_chmod_leaks_nothing(var_dir, monkeypatch):
    def killed(*args, **kwargs):
        raise Killed

    monkeypatch.setattr(Path, "chmod", killed)
    monkeypatch.setattr(os, "chmod", killed)

    try:
        stack.var_secret("secret_key")
        stack.write_stack_env({"SECRET_KEY": "x", "DATABASE_URL": "postgres://u:p@h/db"})
    except Killed:
        pass

    assert modes(var_dir) == {"secret_key": 0o600, "stack.env": 0o600}


def test_a_secret_is_made_once_and_read_back_on_every_start(var_dir):
    first = stack.var_secret("sms_webhook_token")

    assert stack.var_secret("sms_webhook_token") == first
    assert len(first) > 40
    assert modes(var_dir) == {"sms_webhook_token": 0o600}


def test_an_existing_secret_is_never_replaced_and_stack_env_always_is(var_dir):
    (var_dir / "secret_key").write_text("kept")
    (var_dir / "stack.env").write_text("OLD=1\n")

    assert stack.secret_file_write(var_dir / "secret_key", "new", replace=False) is False
    stack.write_stack_env({"NEW": "2"})

    assert (var_dir / "secret_key").read_text() == "kept"
    assert (var_dir / "stack.env").read_text() == "NEW=2\n"
    assert modes(var_dir)["stack.env"] == 0o600
    assert sorted(modes(var_dir)) == ["secret_key", "stack.env"]  # no temporary file left
