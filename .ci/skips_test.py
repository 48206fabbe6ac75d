"""The skip rule of the test command (.ci/skips.py) does what the README says:

- pytest, run as the stages run it (PYTEST_ADDOPTS from .ci/lib.sh), records each skipped
  test by its node id from the repository root, and its reason;
- with CI=true an unlisted skip fails the stage, a listed one (by name or pattern) does not,
  and an entry without a reason is an error; without CI the stage passes and says so.

Usage: VENV/bin/python .ci/skips_test.py   (PYTHONPATH and PYTEST_ADDOPTS as .ci/lib.sh sets them)
"""

import contextlib
import io
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import skips

ROOT = Path(__file__).resolve().parents[1]
failures = []


def expect(condition, message):
    print(("ok: " if condition else "FAIL ") + message)
    if not condition:
        failures.append(message)


def verdict(recorded, allowed, ci):
    """check()'s exit status and output for a stage whose skips file holds `recorded`."""
    with tempfile.TemporaryDirectory() as tmp:
        skips_file, allowed_file = Path(tmp, "skips"), Path(tmp, "allowed.txt")
        skips_file.write_text("".join(f"{name}\t{reason}\n" for name, reason in recorded))
        allowed_file.write_text(allowed)
        os.environ["CI"] = "true" if ci else ""
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            status = skips.check("demo", skips_file, allowed_file)
        return status, out.getvalue()


def main():
    # Inside the repository (its target/, which no check reads), so the name is repo-relative.
    (ROOT / "target").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ROOT / "target") as tmp:
        test_file = Path(tmp, "test_demo.py")
        test_file.write_text(
            "import pytest\n"
            "def test_runs(): pass\n"
            "def test_skips(): pytest.skip('no frobnicator here')\n"
        )
        record = Path(tmp, "record")
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
            cwd=tmp, capture_output=True, text=True,
            env={**os.environ, "CI_SKIPS": str(record)},
        )
        name = f"target/{Path(tmp).name}/test_demo.py::test_skips"
        recorded = record.read_text() if record.exists() else ""
        expect(f"{name}\tno frobnicator here\n" == recorded,
               "pytest records the skipped test by node id and reason"
               + ("" if recorded else f" (recorded nothing; pytest said {result.stdout[-300:]!r})"))
        expect(f"SKIPPED {name}: no frobnicator here" in result.stdout, "pytest prints it by name")

    one = [("infra:terraform-test:aws", "no provider mirror")]
    status, out = verdict(one, "", ci=True)
    expect(status == 1 and "not in .ci/skips.txt" in out, "CI=true: an unlisted skip fails the stage")
    status, out = verdict(one, "", ci=False)
    expect(status == 0 and "would fail" in out, "without CI the stage passes and says it would fail in CI")
    status, out = verdict(one, "infra:terraform-test:* -- the mirror cannot be had here\n", ci=True)
    expect(status == 0 and "[listed: the mirror cannot be had here]" in out, "a listed pattern lets it pass, with its reason")
    status, out = verdict(one, "infra:terraform-test:aws\n", ci=True)
    expect(status == 1, "an entry without a reason is an error")
    status, out = verdict([], "", ci=True)
    expect(status == 0 and "skips in stage demo: none" in out, "no skip: the stage says none")

    print("skips: ok" if not failures else f"skips: {len(failures)} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
