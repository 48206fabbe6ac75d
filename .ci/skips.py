"""Skips, by name: what a stage did not check, and whether CI lets it pass.

Every place in the test command that leaves a check out records it here instead of only
printing it: the shell stages through `skip` (.ci/lib.sh), pytest through .ci/pytest_skips.py,
the image and tools checks by calling record(). ./.ci/test points each stage at a file of its
own (CI_SKIPS) and, when the stage ends, runs `skips.py check STAGE FILE`: it prints the
stage's skips by name with their reasons and, when CI=true, fails the stage for every skip
that .ci/skips.txt does not list with a reason.

.ci/skips.txt: one entry a line, `NAME -- REASON`; NAME is a skip's name or a shell-style
pattern (fnmatch) over names; # starts a comment line.

Usage: python3 .ci/skips.py check STAGE FILE
       python3 .ci/skips.py record NAME REASON   (appends to $CI_SKIPS, prints the skip)
"""

import fnmatch
import os
import sys
from pathlib import Path

ALLOWED = Path(__file__).resolve().parent / "skips.txt"
SEPARATOR = " -- "


def record(name, reason):
    """Say what was not checked, and keep it for the stage's verdict."""
    name, reason = " ".join(name.split()), " ".join(reason.split())
    print(f"SKIPPED {name}: {reason}", flush=True)
    path = os.environ.get("CI_SKIPS")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(f"{name}\t{reason}\n")


def allowed_skips(path=ALLOWED):
    """(pattern, reason) for each entry of .ci/skips.txt; an entry without a reason is an error."""
    entries, errors = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        pattern, _, reason = line.partition(SEPARATOR)
        if not pattern.strip() or not reason.strip():
            errors.append(f"{path.name}:{number}: want `NAME{SEPARATOR}REASON`, got {line!r}")
            continue
        entries.append((pattern.strip(), reason.strip()))
    return entries, errors


def check(stage, skips_file, allowed=ALLOWED):
    skips = []
    if os.path.exists(skips_file):
        for line in Path(skips_file).read_text(encoding="utf-8").splitlines():
            name, _, reason = line.partition("\t")
            if name and (name, reason) not in skips:
                skips.append((name, reason))
    entries, errors = allowed_skips(allowed)
    strict = os.environ.get("CI", "").lower() == "true"
    unlisted = []
    if not skips:
        print(f"skips in stage {stage}: none")
    else:
        print(f"skips in stage {stage}: {len(skips)}")
    for name, reason in skips:
        listed = next((r for p, r in entries if fnmatch.fnmatchcase(name, p)), None)
        if listed is None:
            unlisted.append(name)
            print(f"  SKIPPED {name}: {reason} [not in .ci/skips.txt]")
        else:
            print(f"  SKIPPED {name}: {reason} [listed: {listed}]")
    for error in errors:
        print(f"FAIL {error}")
    if unlisted and strict:
        print(f"FAIL CI=true: {len(unlisted)} skip(s) not listed in .ci/skips.txt; make the check "
              f"run, or list it there with the reason it cannot")
    elif unlisted:
        print(f"note: with CI=true, {len(unlisted)} unlisted skip(s) would fail this stage")
    return 1 if errors or (unlisted and strict) else 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "check":
        sys.exit(check(sys.argv[2], sys.argv[3]))
    if len(sys.argv) == 4 and sys.argv[1] == "record":
        record(sys.argv[2], sys.argv[3])
        sys.exit(0)
    sys.exit(__doc__)
