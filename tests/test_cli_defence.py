"""The CLI's last line of defence: an error textcls did not foresee is one paragraph and exit 1, with the
traceback only under --debug / TEXTCLS_DEBUG=1; and --version."""

from __future__ import annotations

from typer.testing import CliRunner

from textcls import __version__
from textcls.cli import app
from textcls.train import loop


def _explode(*args, **kwargs):
    raise ZeroDivisionError("planted for the test")


def test_an_unexpected_error_is_one_paragraph_and_exit_1(monkeypatch):
    monkeypatch.setattr(loop, "train", _explode)
    monkeypatch.delenv("TEXTCLS_DEBUG", raising=False)
    result = CliRunner().invoke(app, ["train"])
    assert result.exit_code == 1
    assert "internal error" in result.output and "ZeroDivisionError: planted for the test" in result.output
    assert "--debug" in result.output and "Traceback" not in result.output
    assert not isinstance(result.exception, ZeroDivisionError)


def test_debug_shows_the_traceback(monkeypatch):
    monkeypatch.setattr(loop, "train", _explode)
    monkeypatch.delenv("TEXTCLS_DEBUG", raising=False)
    result = CliRunner().invoke(app, ["--debug", "train"])
    assert isinstance(result.exception, ZeroDivisionError)  # re-raised: the runner holds the traceback
    monkeypatch.setenv("TEXTCLS_DEBUG", "1")
    assert isinstance(CliRunner().invoke(app, ["train"]).exception, ZeroDivisionError)


def test_version_option():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == __version__
