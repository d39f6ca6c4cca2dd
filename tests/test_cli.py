"""The `fallwerk` command line: scriptable with --json, one clear line on stderr for every error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli import main
from tests import modelkit
from tests.conftest import CORPUS


@pytest.fixture
def cli(db, tmp_path, monkeypatch):
    """Runs `fallwerk ...` in-process against the test database."""
    monkeypatch.setenv("FALLWERK_DATABASE_URL", db.url)
    runner = CliRunner()

    def run(*args, ok=True):
        result = runner.invoke(main, ["--now", "2026-11-26T09:00:00+00:00", *args], catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.stderr or result.output
        return result

    run("init", "--organisation", str(tmp_path / "none.json"))
    run("group", "add", "rz-west", "--name", "RZ West")
    run("user", "add", "alice", "--member", "rz-west:counsellor", "--password", "geheim-geheim")
    run("user", "add", "lena", "--member", "rz-west:lead")
    return run


def _write(tmp_path: Path, name: str, content: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(content)
    return str(path)


def test_a_process_is_driven_from_the_shell_with_json_output(cli, tmp_path):
    model = _write(tmp_path, "approval.bpmn", modelkit.approval())
    deployed = json.loads(cli("deploy", model, "--json").output)
    assert deployed["processes"] == [{"key": "approval", "version": 1, "status": "deployed"}]
    assert json.loads(cli("deploy", model, "--json").output)["processes"][0]["status"] == "unchanged"
    assert json.loads(cli("definitions", "--json").output)[0]["key"] == "approval"

    started = json.loads(cli("start", "approval", "--data", '{"unit": "rz-west"}', "--user", "alice",
                             "--json").output)
    (task,) = started["tasks"]
    assert task["element_id"] == "request" and task["assignee"] == "alice"
    mine = json.loads(cli("tasks", "--user", "alice", "--json").output)
    assert [t["id"] for t in mine] == [task["id"]]

    cli("complete", task["id"][:8], "--data", '{"amount": 120}', "--user", "alice")
    shown = json.loads(cli("show", str(started["id"]), "--json").output)
    (decide,) = shown["tasks"]
    assert decide["candidate_groups"] == ["rz-west:lead"]
    assert shown["data"]["amount"] == 120
    assert "request" in shown["completed"]
    assert [h["action"] for h in shown["history"]] == ["start", "complete"]

    cli("claim", decide["id"], "--user", "lena")
    done = json.loads(cli("complete", decide["id"], "--data", '{"approved": true}', "--user", "lena",
                          "--json").output)
    assert done["status"] == "completed"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["start", "nope", "--user", "alice"], "no deployed process 'nope'"),
        (["start", "nope", "--user", "alice", "--data", "{not json"], "--data is not valid JSON"),
        (["show", "999"], "no instance 999"),
        (["complete", "deadbeef", "--user", "alice"], "no task matches 'deadbeef'"),
        (["user", "add", "Bad Name"], "Invalid user name"),
        (["user", "add", "x", "--member", "nowhere:counsellor"], "Unknown unit 'nowhere'"),
        (["user", "add", "x", "--member", "rz-west:pope"], "Unknown role 'pope'"),
        (["start", "nope", "--user", "nobody"], "unknown user 'nobody'"),  # the audit trail names who acted
        (["cancel", "1", "--user", ""], "unknown user ''"),
        (["--now", "garbage", "show", "1"], "--now is not an ISO 8601 instant"),
        (["--now", "99999-01-01", "show", "1"], "--now is not an ISO 8601 instant"),
    ],
)
def test_errors_are_one_clear_line_on_stderr(cli, args, message):
    result = cli(*args, ok=False)
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("fallwerk: error: ")
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.output


@pytest.mark.parametrize("args", [["show", "999999999999999999999999"], ["start", "x", "--version", "2147483648",
                                                                          "--user", "alice"]])
def test_a_number_no_id_can_be_is_a_usage_error(cli, args):
    result = cli(*args, ok=False)
    assert result.exit_code == 2 and "is not in the range" in result.stderr and "Traceback" not in result.stderr


def test_invalid_form_data_names_the_field(cli, tmp_path):
    cli("deploy", _write(tmp_path, "approval.bpmn", modelkit.approval()))
    started = json.loads(cli("start", "approval", "--data", '{"unit": "rz-west"}', "--user", "alice",
                             "--json").output)
    result = cli("complete", started["tasks"][0]["id"], "--data", '{"amount": 0}', "--user", "alice", ok=False)
    assert result.exit_code == 1 and "amount:" in result.stderr


def test_a_broken_model_deploys_nothing_and_lists_its_findings(cli, tmp_path):
    broken = _write(tmp_path, "broken.bpmn", b"<bpmn:definitions xmlns:bpmn='x'><oops>")
    result = cli("deploy", broken, ok=False)
    assert result.exit_code == 1
    assert "broken.bpmn: -: " in result.stderr
    assert json.loads(cli("definitions", "--json").output) == []


def test_check_over_the_whole_corpus_never_crashes():
    """`fallwerk check` as a real process over every corpus file: findings, never a traceback."""
    files = sorted(str(p) for p in CORPUS.rglob("*") if p.is_file())
    assert len(files) > 90
    result = subprocess.run([sys.executable, "-m", "engine.cli", "check", *files], capture_output=True,
                            text=True, timeout=300, env={**os.environ, "FALLWERK_DEBUG": ""})
    assert result.returncode == 1  # the corpus has errors (cron cycles, groovy, ...)
    assert "Traceback" not in result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line]
    assert lines and all(line.count(": ") >= 2 for line in lines)


def test_check_passes_on_the_networks_own_models():
    root = Path(__file__).resolve().parent.parent
    files = [str(p) for p in sorted((root / "processes").iterdir()) + sorted((root / "forms").iterdir())]
    result = subprocess.run([sys.executable, "-m", "engine.cli", "check", *files], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""
