"""helm-recover.sh brings a release left pending by an interrupted deploy back to its last
deployed revision, so the next upgrade runs instead of failing with "another operation
(install/upgrade/rollback) is in progress".

No Kubernetes runs here, so `helm` on PATH is a stand-in that keeps each release's history
in a JSON file and follows Helm 3's bookkeeping for the commands the deploy job uses:
history, rollback (a new revision copied from the target, the others superseded),
uninstall (the history goes), and upgrade --install (refused while the last revision is
pending). The script under test runs unchanged.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "helm-recover.sh"

FAKE_HELM = textwrap.dedent(
    '''\
    #!/usr/bin/env python3
    import json, os, sys
    from pathlib import Path

    state = Path(os.environ["FAKE_HELM_DIR"])
    args = sys.argv[1:]
    with open(state / "calls.log", "a") as log:
        log.write(" ".join(args) + "\\n")
    if os.environ.get("FAKE_HELM_UNREACHABLE"):
        sys.exit("Error: Kubernetes cluster unreachable: the server has asked for the client to provide credentials")

    def flag(name, default=None):
        return args[args.index(name) + 1] if name in args else default

    command = args[0]
    # upgrade --install RELEASE CHART ...; the other commands: COMMAND RELEASE ...
    release = [a for a in args[1:] if a != "--install"][0]
    path = state / f"{flag('--namespace')}.{release}.json"
    history = json.loads(path.read_text()) if path.exists() else None

    def save(entries):
        path.write_text(json.dumps(entries))

    def add(entries, status, description, chart="order-service-0.1.0"):
        for entry in entries:
            if entry["status"] == "deployed" or entry["status"].startswith("pending-"):
                entry["status"] = "superseded"
        revision = max((e["revision"] for e in entries), default=0) + 1
        entries.append({"revision": revision, "status": status, "chart": chart, "description": description})
        save(entries)

    if command == "history":
        if history is None:
            sys.exit("Error: release: not found")
        print(json.dumps(history[-int(flag("--max", "256")):]))
    elif command == "rollback":
        target = int(args[2])
        if history is None or not any(e["revision"] == target for e in history):
            sys.exit(f"Error: release has no {target} version")
        add(history, "deployed", f"Rollback to {target}")
    elif command == "uninstall":
        if history is None:
            sys.exit("Error: uninstall: Release not loaded: not found")
        path.unlink()
    elif command == "upgrade":
        if history is None:
            if "--install" not in args:
                sys.exit(f'Error: UPGRADE FAILED: "{release}" has no deployed releases')
            add([], "deployed", "Install complete")
        elif history[-1]["status"].startswith("pending-"):
            sys.exit("Error: UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress")
        else:
            add(history, "deployed", "Upgrade complete")
    else:
        sys.exit(f"fake helm: {command} is not simulated")
    '''
)


@pytest.fixture
def helm(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "helm"
    fake.write_text(FAKE_HELM)
    fake.chmod(0o755)

    class Helm:
        dir = tmp_path
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_HELM_DIR": str(tmp_path)}

        def history(self, statuses: list[str] | None):
            path = tmp_path / "staging.order-service.json"
            if statuses is None:
                path.unlink(missing_ok=True)
                return
            path.write_text(
                json.dumps([{"revision": i + 1, "status": s, "description": ""} for i, s in enumerate(statuses)])
            )

        def statuses(self) -> list[str] | None:
            path = tmp_path / "staging.order-service.json"
            return [e["status"] for e in json.loads(path.read_text())] if path.exists() else None

        def calls(self) -> list[str]:
            log = tmp_path / "calls.log"
            return [c for c in log.read_text().splitlines() if not c.startswith("history")] if log.exists() else []

        def run(self, *args: str, **env) -> subprocess.CompletedProcess:
            return subprocess.run(
                args, env={**self.env, **env}, capture_output=True, text=True, check=False, cwd=tmp_path
            )

        def recover(self, **env) -> subprocess.CompletedProcess:
            return self.run("bash", str(SCRIPT), "order-service", "staging", **env)

        def upgrade(self) -> subprocess.CompletedProcess:
            return self.run("helm", "upgrade", "--install", "order-service", "charts/order-service", "--namespace", "staging")

    return Helm()


def test_the_fake_refuses_an_upgrade_over_a_pending_release(helm):
    # What every deploy after an interrupted one ran into.
    helm.history(["superseded", "deployed", "pending-upgrade"])
    result = helm.upgrade()
    assert result.returncode != 0
    assert "another operation (install/upgrade/rollback) is in progress" in result.stderr


@pytest.mark.parametrize("pending", ["pending-upgrade", "pending-rollback"])
def test_a_pending_revision_is_rolled_back_to_the_last_deployed_one(helm, pending):
    helm.history(["superseded", "superseded", "deployed", pending])
    result = helm.recover()
    assert result.returncode == 0, result.stderr
    assert helm.calls() == ["rollback order-service 3 --namespace staging --wait --timeout 10m"]
    assert f"revision 4 is {pending}" in result.stdout
    # The next deploy goes through.
    assert helm.upgrade().returncode == 0
    assert helm.statuses()[-1] == "deployed"


def test_without_a_deployed_revision_the_last_superseded_one_is_restored(helm):
    helm.history(["superseded", "failed", "pending-upgrade"])
    result = helm.recover()
    assert result.returncode == 0, result.stderr
    assert helm.calls() == ["rollback order-service 1 --namespace staging --wait --timeout 10m"]


def test_an_interrupted_first_install_is_removed_so_the_next_deploy_installs(helm):
    helm.history(["pending-install"])
    result = helm.recover()
    assert result.returncode == 0, result.stderr
    assert helm.calls() == ["uninstall order-service --namespace staging --wait --timeout 10m"]
    assert helm.statuses() is None
    assert helm.upgrade().returncode == 0
    assert helm.statuses() == ["deployed"]


@pytest.mark.parametrize(
    "statuses",
    [None, ["deployed"], ["superseded", "deployed"], ["deployed", "failed"], ["superseded", "superseded", "deployed"]],
    ids=["not-installed", "deployed", "upgraded", "last-failed", "rolled-back"],
)
def test_a_settled_release_is_left_alone(helm, statuses):
    helm.history(statuses)
    result = helm.recover()
    assert result.returncode == 0, result.stderr
    assert helm.calls() == []
    assert helm.statuses() == statuses


def test_a_pending_rollback_with_nothing_to_return_to_stops_with_one_line(helm):
    helm.history(["failed", "pending-rollback"])
    result = helm.recover()
    assert result.returncode == 1
    assert helm.calls() == []
    assert "no earlier revision was ever deployed" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_unreadable_history_stops_the_deploy(helm):
    helm.history(["deployed", "pending-upgrade"])
    result = helm.recover(FAKE_HELM_UNREACHABLE="1")
    assert result.returncode == 1
    assert "cluster unreachable" in result.stderr
