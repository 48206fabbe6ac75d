"""Execute the workflows' job logic for every trigger they accept and check which jobs run.

workflow_graph.py follows GitHub's rules for needs, if, the status functions and reusable
workflows; the first tests pin those rules on small workflows, the rest run the real
workflow files. The table of what runs for each trigger is the one in .github/PIPELINES.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workflow_graph import (  # noqa: E402
    Concurrency,
    Evaluator,
    Parser,
    dispatch,
    evaluate,
    load,
    pull_request,
    push,
    ran,
    render,
    schedule,
    workflow_run,
)

WORKFLOWS = Path(__file__).resolve().parents[1] / "workflows"
VARIABLES = {"IMAGE_REPOSITORY": "acme/order-service", "AWS_REGION": "eu-west-1"}


def simulate(name: str, event, fail=(), cancelled=False):
    evaluator = Evaluator(WORKFLOWS, fail=set(fail), cancelled=cancelled, variables=VARIABLES)
    return evaluator.run(WORKFLOWS / name, event)


# --- the rules, on small workflows -------------------------------------------------------


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_expressions_follow_github_semantics():
    ctx = {"github": {"ref": "refs/heads/Main", "event": {}}, "inputs": {"apply": False, "n": "3"}}

    def ev(text):
        return evaluate(Parser(text).parse(), ctx)

    assert ev("github.ref == 'refs/heads/main'") is True  # strings compare case-insensitively
    assert ev("inputs.apply || 'fallback'") == "fallback"  # || yields an operand, not a boolean
    assert ev("inputs.n == 3") is True  # a string meets a number: both become numbers
    assert ev("github.event.pull_request.head.repo.full_name") is None  # missing is null, not an error
    assert ev("!inputs.apply && startsWith(github.ref, 'refs/heads/')") is True
    assert ev("format('{0}-{1}', 'a', 1)") == "a-1"


def test_a_skipped_job_anywhere_upstream_skips_jobs_with_the_implicit_success(tmp_path):
    # The shape of the bug: c runs thanks to always(), d has no if and needs c.
    path = write(
        tmp_path,
        "w.yml",
        """
        on: push
        jobs:
          a: {runs-on: x, steps: []}
          b: {needs: a, if: "false", runs-on: x, steps: []}
          c: {needs: [a, b], if: "always() && needs.a.result == 'success'", runs-on: x, steps: []}
          d: {needs: c, runs-on: x, steps: []}
          e: {needs: c, if: "!cancelled() && needs.c.result == 'success'", runs-on: x, steps: []}
          f: {needs: c, if: "github.ref == 'refs/heads/main'", runs-on: x, steps: []}
        """,
    )
    results = Evaluator(tmp_path).run(path, push())
    assert ran(results) == {"a", "c", "e"}
    assert results["d"].result == "skipped"  # implicit success() sees b skipped two levels up
    assert results["f"].result == "skipped"  # an if without a status function gets success() &&


def test_failure_and_cancelled(tmp_path):
    path = write(
        tmp_path,
        "w.yml",
        """
        on: push
        jobs:
          a: {runs-on: x, steps: []}
          b: {needs: a, runs-on: x, steps: []}
          on-failure: {needs: b, if: "failure()", runs-on: x, steps: []}
          not-cancelled: {needs: b, if: "!cancelled()", runs-on: x, steps: []}
          always: {needs: b, if: "always()", runs-on: x, steps: []}
        """,
    )
    results = Evaluator(tmp_path, fail={"a"}).run(path, push())
    assert ran(results) == {"a", "on-failure", "not-cancelled", "always"}
    results = Evaluator(tmp_path, cancelled=True).run(path, push())
    assert ran(results) == {"always"}


def test_reusable_workflows_run_under_the_caller_and_fail_it(tmp_path):
    write(
        tmp_path,
        "called.yml",
        """
        on:
          workflow_call:
            inputs:
              environment: {type: string, required: true}
              write: {type: boolean, default: false}
        jobs:
          deploy:
            if: "inputs.environment != 'skip-me'"
            runs-on: x
            environment: ${{ inputs.environment }}
            steps: []
          writer: {needs: deploy, if: "inputs.write", runs-on: x, steps: []}
        """,
    )
    path = write(
        tmp_path,
        "caller.yml",
        """
        on: push
        jobs:
          one: {uses: ./.github/workflows/called.yml, with: {environment: staging}}
          two: {needs: one, uses: ./.github/workflows/called.yml, with: {environment: production}}
        """,
    )
    results = Evaluator(tmp_path).run(path, push())
    assert ran(results) == {"one", "one/deploy", "two", "two/deploy"}
    assert results["two/deploy"].environment == "production"
    results = Evaluator(tmp_path, fail={"one/deploy"}).run(path, push())
    assert results["one"].result == "failure"
    assert results["two"].result == "skipped"


def test_unknown_inputs_of_a_reusable_workflow_are_an_error(tmp_path):
    write(tmp_path, "called.yml", "on: {workflow_call: {inputs: {a: {type: string}}}}\njobs: {}\n")
    path = write(tmp_path, "caller.yml", "on: push\njobs:\n  c: {uses: ./.github/workflows/called.yml, with: {b: 1}}\n")
    with pytest.raises(ValueError, match="declares no input"):
        Evaluator(tmp_path).run(path, push())


def test_reading_a_job_that_is_not_needed_is_an_error(tmp_path):
    path = write(
        tmp_path,
        "w.yml",
        """
        on: push
        jobs:
          a: {runs-on: x, steps: []}
          b: {if: "needs.a.result == 'success'", runs-on: x, steps: []}
        """,
    )
    with pytest.raises(ValueError, match="reads needs.a but does not need it"):
        Evaluator(tmp_path).run(path, push())


def test_trigger_filters(tmp_path):
    path = write(
        tmp_path,
        "w.yml",
        """
        on:
          push: {branches: [main]}
          workflow_run: {workflows: [ci], types: [completed], branches: [main]}
        jobs:
          a: {runs-on: x, steps: []}
        """,
    )
    ev = Evaluator(tmp_path)
    assert ran(ev.run(path, push("main"))) == {"a"}
    assert ev.run(path, push("topic")) == {}
    assert ran(ev.run(path, workflow_run("ci"))) == {"a"}
    assert ev.run(path, workflow_run("other")) == {}
    assert ev.run(path, pull_request("opened")) == {}


# --- deliver.yml ---------------------------------------------------------------------------

DEPLOYS = {"staging", "staging/deploy", "production", "production/deploy"}
BUILD = {"gate", "plan", "settings", "names", "image"}


def test_deliver_runs_only_after_a_green_ci_run_of_a_push_to_main():
    assert simulate("deliver.yml", push()) == {}, "deliver must not start on a push: CI has not passed yet"
    results = simulate("deliver.yml", workflow_run("ci", "success"))
    assert ran(results) == BUILD | DEPLOYS
    assert results["staging/deploy"].environment == "staging"
    # Production waits for the required reviewers of its environment.
    assert results["production/deploy"].environment == "production"


@pytest.mark.parametrize(
    "event",
    [
        workflow_run("ci", "failure"),
        workflow_run("ci", "cancelled"),
        workflow_run("ci", "success", event="pull_request"),  # a pull request from a branch named main
        workflow_run("ci", "success", head_repository="someone/order-service"),
        dispatch(ref="refs/heads/topic", apply=False),
    ],
    ids=["ci-failed", "ci-cancelled", "ci-of-a-pull-request", "ci-of-a-fork", "dispatch-off-main"],
)
def test_deliver_deploys_nothing_untested(event):
    results = simulate("deliver.yml", event)
    assert ran(results) == set(), f"ran {sorted(ran(results))}"


@pytest.mark.parametrize(
    "event",
    [workflow_run("ci", "success"), dispatch(apply=False), dispatch(apply=True)],
    ids=["ci-passed", "manual", "manual-apply"],
)
def test_every_run_that_builds_an_image_and_reads_the_settings_deploys_it(event):
    # Whatever the trigger that delivers (a push delivers nothing until CI has passed: see
    # above): the image is pushed, the settings are read, and both environments get it
    # (production behind its approval).
    results = simulate("deliver.yml", event)
    assert {"image", "settings"} <= ran(results), f"only {sorted(ran(results))} ran"
    assert {"staging/deploy", "production/deploy"} <= ran(results), (
        f"image and settings succeeded but only {sorted(ran(results))} ran"
    )


def test_a_manual_run_without_apply_delivers_like_a_push():
    results = simulate("deliver.yml", dispatch(apply=False))
    assert ran(results) == BUILD | DEPLOYS
    assert results["apply"].result == "skipped"


def test_a_manual_apply_runs_apply_before_settings_and_then_deploys():
    results = simulate("deliver.yml", dispatch(apply=True))
    assert ran(results) == BUILD | DEPLOYS | {"apply"}
    assert results["apply"].environment == "infrastructure"
    settings_needs = load(WORKFLOWS / "deliver.yml")["jobs"]["settings"]["needs"]
    assert "apply" in settings_needs, "settings must read the outputs after the apply"


@pytest.mark.parametrize(
    "failing, skipped",
    [
        ("apply", {"settings"} | DEPLOYS),
        ("plan", {"apply", "settings"} | DEPLOYS),
        ("image", DEPLOYS),
        ("staging/deploy", {"production", "production/deploy"}),
    ],
)
def test_a_failure_stops_everything_downstream(failing, skipped):
    results = simulate("deliver.yml", dispatch(apply=True), fail={failing})
    assert not (ran(results) & skipped), f"{failing} failed, yet {sorted(ran(results) & skipped)} ran"


def test_a_cancelled_deliver_run_deploys_nothing():
    results = simulate("deliver.yml", workflow_run("ci", "success"), cancelled=True)
    assert not (ran(results) & DEPLOYS)


# --- deliver.yml across several runs: concurrency groups and approvals -------------------

REVIEWED = {"production", "infrastructure"}  # environments with required reviewers (PIPELINES.md)


def runs() -> Concurrency:
    return Concurrency(Evaluator(WORKFLOWS, variables=VARIABLES), reviewed=REVIEWED)


def test_a_production_approval_never_holds_back_staging():
    sim = runs()
    first = sim.start(WORKFLOWS / "deliver.yml", workflow_run("ci", "success"))
    assert sim.state(first, "production/deploy") == "waiting"
    second = sim.start(WORKFLOWS / "deliver.yml", workflow_run("ci", "success"))
    third = sim.start(WORKFLOWS / "deliver.yml", workflow_run("ci", "success"))
    # Every newer commit reaches staging while the first waits for its reviewer.
    assert sim.state(second, "staging/deploy") == "success"
    assert sim.state(third, "staging/deploy") == "success"
    # Production: one waits for approval, the newest queues, the one in between is superseded.
    assert sim.state(second, "production/deploy") == "cancelled"
    assert sim.state(third, "production/deploy") == "pending"
    sim.approve(first, "production/deploy")
    assert sim.state(first, "production/deploy") == "success"
    assert sim.state(third, "production/deploy") == "waiting"


def test_a_manual_apply_is_never_replaced_by_later_deliveries():
    sim = runs()
    waiting = sim.start(WORKFLOWS / "deliver.yml", workflow_run("ci", "success"))  # holds a production approval
    apply = sim.start(WORKFLOWS / "deliver.yml", dispatch(apply=True))
    assert sim.state(apply, "apply") == "waiting"
    later = [sim.start(WORKFLOWS / "deliver.yml", workflow_run("ci", "success")) for _ in range(2)]
    assert sim.state(apply, "apply") == "waiting", "a later run replaced the pending apply"
    assert all(sim.state(run, "staging/deploy") == "success" for run in later)
    # A second apply does not replace the first either: both wait for their reviewers.
    second_apply = sim.start(WORKFLOWS / "deliver.yml", dispatch(apply=True))
    assert sim.state(apply, "apply") == "waiting" and sim.state(second_apply, "apply") == "waiting"
    sim.approve(apply, "apply")
    assert sim.state(apply, "settings") == "success"
    assert sim.state(apply, "staging/deploy") == "success"
    assert sim.state(waiting, "production/deploy") == "waiting"


def test_the_concurrency_model_follows_githubs_pending_rule(tmp_path):
    # One in progress, one pending; a newer arrival cancels the pending one.
    path = write(
        tmp_path,
        "w.yml",
        """
        on: push
        concurrency: {group: one, cancel-in-progress: false}
        jobs:
          gated: {runs-on: x, environment: production, steps: []}
        """,
    )
    sim = Concurrency(Evaluator(tmp_path), reviewed={"production"})
    a, b, c = (sim.start(path, push()) for _ in range(3))
    assert [sim.runs[r].state for r in (a, b, c)] == ["running", "cancelled", "pending"]
    sim.approve(a, "gated")
    assert sim.runs[a].state == "done" and sim.state(c, "gated") == "waiting"


# --- ci.yml, preview.yml, preview-sweep.yml ------------------------------------------------

CI_JOBS = {"test", "provider-locks", "image-arm64", "advisories", "checkov", "zizmor", "hadolint"}


@pytest.mark.parametrize("event", [push("main"), pull_request("opened"), pull_request("synchronize")])
def test_ci_runs_every_check(event):
    assert ran(simulate("ci.yml", event)) == CI_JOBS


def test_ci_does_not_run_for_pushes_to_other_branches_or_closed_pull_requests():
    # A branch's pull request runs it instead; a closed one has nothing left to test.
    assert simulate("ci.yml", push("topic")) == {}
    assert simulate("ci.yml", pull_request("closed")) == {}


def test_other_pull_request_activity_starts_no_preview():
    assert simulate("preview.yml", pull_request("edited")) == {}
    assert simulate("preview.yml", push()) == {}


@pytest.mark.parametrize("action", ["opened", "synchronize", "reopened"])
def test_a_pull_request_builds_deploys_and_comments(action):
    results = simulate("preview.yml", pull_request(action))
    assert ran(results) == {"build", "deploy", "comment"}
    assert results["deploy"].environment == "preview"


def test_a_closed_pull_request_runs_only_the_teardown():
    assert ran(simulate("preview.yml", pull_request("closed"))) == {"destroy", "comment"}


@pytest.mark.parametrize("action", ["opened", "synchronize", "closed"])
def test_a_fork_gets_no_preview_job(action):
    assert ran(simulate("preview.yml", pull_request(action, fork=True))) == set()


def preview_comment(event, results, tmp_path: Path) -> str:
    """The comment body the comment job posts after `results`: its step run by bash with the
    env GitHub would give it, `gh` replaced by a recorder (no existing comment, so it posts)."""
    doc = load(WORKFLOWS / "preview.yml")
    job = doc["jobs"]["comment"]
    context = {
        "github": event.github(),
        "vars": VARIABLES,
        "needs": {n: {"result": results[n].result, "outputs": results[n].outputs} for n in job["needs"]},
    }
    step = next(s for s in job["steps"] if s.get("name") == "Update the sticky comment")
    env = {k: to_text(render(v, context)) for k, v in {**doc.get("env", {}), **step["env"]}.items()}
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gh").write_text('#!/bin/sh\nprintf \'%s\\0\' "$@" >> "$GH_CALLS"\n')
    (bin_dir / "gh").chmod(0o755)
    calls = tmp_path / "gh-calls"
    subprocess.run(
        ["bash", "-euo", "pipefail", "-c", step["run"]],
        cwd=WORKFLOWS.parents[1], check=True, capture_output=True, text=True,
        env={**env, "PATH": f"{bin_dir}:{os.environ['PATH']}", "RUNNER_TEMP": str(tmp_path), "GH_CALLS": str(calls)},
    )
    args = calls.read_text().split("\0")
    bodies = [a.removeprefix("body=") for a in args if a.startswith("body=")]
    assert len(bodies) == 1, args
    return bodies[0]


def to_text(value) -> str:
    return "" if value is None else str(value)


@pytest.mark.parametrize("failing", ["build", "deploy"])
def test_the_preview_comment_reports_a_failed_deploy(failing, tmp_path):
    event = pull_request("opened")
    results = simulate("preview.yml", event, fail={failing})
    assert results["comment"].result == "success"
    body = preview_comment(event, results, tmp_path)
    head_sha = event.github()["event"]["pull_request"]["head"]["sha"]
    assert f"for {head_sha} failed to deploy or its smoke test failed" in body, body
    assert "Smoke test passed" not in body, body
    assert "<deploy.url>" not in body, "a failed deploy's comment shows a URL"


def test_the_preview_comment_shows_the_url_of_a_good_deploy(tmp_path):
    event = pull_request("opened")
    results = simulate("preview.yml", event)
    body = preview_comment(event, results, tmp_path)
    assert results["deploy"].outputs["url"] in body, body
    assert "Smoke test passed" in body, body


@pytest.mark.parametrize("event", [schedule(), dispatch(**{"dry-run": True}), dispatch(**{"dry-run": False})])
def test_the_sweep_runs_nightly_and_by_hand(event):
    results = simulate("preview-sweep.yml", event)
    assert ran(results) == {"sweep"}
    assert results["sweep"].environment == "preview"
