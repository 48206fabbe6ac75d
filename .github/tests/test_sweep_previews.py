"""sweep-previews.sh destroys exactly the previews whose pull request is no longer open.

The choice and the bookkeeping only: aws, gh and the destroy script are small stand-ins
on PATH, so dry runs and failed destroys are quick to set up. test_sweep_terraform.py
runs the same script with real terraform against moto.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"

STATES = {"3": "OPEN", "7": "CLOSED", "12": "MERGED", "40": "CLOSED"}
KEYS = "preview/pr-3.tfstate\tpreview/pr-7.tfstate\tpreview/pr-12.tfstate\tpreview/pr-40.tfstate\tpreview/notes.txt"


def stub(path: Path, body: str) -> None:
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(0o755)


def sweep(tmp_path: Path, dry_run: bool, failing_pr: str = "") -> tuple[subprocess.CompletedProcess, list[str]]:
    bin_dir = tmp_path / "bin"
    scripts = tmp_path / "scripts"
    bin_dir.mkdir()
    scripts.mkdir()
    shutil.copy(SCRIPTS / "sweep-previews.sh", scripts)
    calls = tmp_path / "destroyed"
    stub(bin_dir / "aws", f"printf '%s\\n' '{KEYS}'\n")
    cases = "".join(f"  {pr}) echo {state};;\n" for pr, state in STATES.items())
    stub(bin_dir / "gh", f'case "$3" in\n{cases}  *) exit 1;;\nesac\n')
    stub(
        scripts / "preview-destroy.sh",
        f'[ "$1" = "{failing_pr}" ] && exit 1\necho "$1" >> "{calls}"\n',
    )
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "TF_STATE_BUCKET": "bucket",
        "AWS_REGION": "eu-west-1",
        "GH_REPO": "acme/order-service",
        "DRY_RUN": "true" if dry_run else "false",
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"),
    }
    result = subprocess.run(
        ["bash", str(scripts / "sweep-previews.sh")], env=env, capture_output=True, text=True, check=False
    )
    destroyed = calls.read_text().split() if calls.exists() else []
    return result, destroyed


def test_destroys_closed_and_merged_keeps_open(tmp_path):
    result, destroyed = sweep(tmp_path, dry_run=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(destroyed, key=int) == ["7", "12", "40"]
    assert "pr-3: open, kept" in result.stdout
    assert "sweep: 3 destroyed, 0 failed" in result.stdout


def test_dry_run_destroys_nothing(tmp_path):
    result, destroyed = sweep(tmp_path, dry_run=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert destroyed == []
    assert "pr-12: MERGED, destroying" in result.stdout


def test_a_failed_destroy_fails_the_sweep_after_trying_the_rest(tmp_path):
    result, destroyed = sweep(tmp_path, dry_run=False, failing_pr="7")
    assert result.returncode == 1
    assert sorted(destroyed, key=int) == ["12", "40"]
    assert "sweep: 2 destroyed, 1 failed" in result.stdout
