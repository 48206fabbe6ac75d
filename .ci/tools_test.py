"""One version of each tool for ./.ci/test and for the workflows.

- Every package a workflow installs with pip or pipx carries a version (`name==version`).
- Where the test command installs the same package (ensure_pip / ensure_rust_tool in
  .ci/stages/*.sh, or a dependency pinned in .ci/tools.txt), .ci/tools.txt pins it, to the same
  version as every workflow that installs it.
- What the test command has installed is what .ci/tools.txt pins: the packages in its venv, and
  the Rust tools as `cargo <subcommand>` would run them. A tool not installed yet is reported
  and skipped (its stage installs it).

Usage: VENV/bin/python .ci/tools_test.py REPO_ROOT
"""

import importlib.metadata
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(sys.argv[1]).resolve()
failures = []


def fail(message):
    failures.append(message)
    print("FAIL", message)


def canon(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins():
    pins = {}
    for line in (ROOT / ".ci/tools.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            if not sep:
                fail(f".ci/tools.txt: {line!r} is not name==version")
                continue
            pins[canon(name)] = version.strip()
    return pins


def test_command_installs():
    """{package: how} for every ensure_pip / ensure_rust_tool call in the stages."""
    installs = {}
    for script in sorted((ROOT / ".ci/stages").glob("*.sh")):
        for line in script.read_text().splitlines():
            if line.lstrip().startswith("#"):
                continue
            for m in re.finditer(r'\bensure_pip\s+["\']?([\w.\-]+)', line):
                installs[canon(m.group(1))] = f"ensure_pip in {script.name}"
            for m in re.finditer(r"\bensure_rust_tool\s+(\S+)\s+(\S+)", line):
                installs[canon(m.group(2))] = f"ensure_rust_tool {m.group(1)} in {script.name}"
    return installs


def workflow_installs():
    """[(workflow, package, version or None)] for every pip/pipx install in a run step."""
    found = []
    for path in sorted((ROOT / ".github/workflows").glob("*.yml")):
        doc = yaml.safe_load(path.read_text())
        for job in (doc.get("jobs") or {}).values():
            for step in job.get("steps") or []:
                for command in re.split(r"\n|&&|;", step.get("run") or ""):
                    try:
                        words = shlex.split(command, comments=True)
                    except ValueError:
                        words = command.split()
                    for i in range(len(words) - 1):
                        if words[i] in ("pip", "pip3", "pipx") and words[i + 1] == "install":
                            for arg in words[i + 2:]:
                                if arg.startswith("-"):
                                    continue
                                name, sep, version = arg.partition("==")
                                found.append((path.name, canon(name.split("[")[0]), version if sep else None))
    return found


def installed_rust_tool(command):
    """Version of the tool `cargo <subcommand>` runs: ~/.cargo/bin first, then PATH."""
    home_bin = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo")) / "bin" / command
    exe = str(home_bin) if os.access(home_bin, os.X_OK) else None
    if exe is None:
        for folder in os.environ.get("PATH", "").split(os.pathsep):
            candidate = Path(folder) / command
            if os.access(candidate, os.X_OK):
                exe = str(candidate)
                break
    if exe is None:
        return None, None
    # Called as cargo calls it: the subcommand name first.
    sub = command.removeprefix("cargo-")
    out = subprocess.run([exe, sub, "--version"], capture_output=True, text=True).stdout.split()
    return exe, out[1] if len(out) > 1 else "?"


def main():
    pins = read_pins()
    installs = test_command_installs()
    print(f".ci/tools.txt pins {len(pins)} packages; the stages install {len(installs)} with ensure_*")

    checked = 0
    for workflow, name, version in workflow_installs():
        if version is None:
            fail(f"{workflow} installs {name} without a version")
            continue
        if name in installs or name in pins:
            checked += 1
            if pins.get(name) != version:
                fail(f"{workflow} pins {name}=={version}, ./.ci/test installs "
                     f"{pins.get(name) or 'an unpinned version'} (.ci/tools.txt)")
            else:
                print(f"ok  {name}=={version}: {workflow} and .ci/tools.txt")
    if checked == 0:
        fail("no workflow install matched a tool of the test command; the parser found nothing")

    for name, how in installs.items():
        if how.startswith("ensure_rust_tool") and name not in pins:
            fail(f"{how}: {name} has no version in .ci/tools.txt")

    for name, want in sorted(pins.items()):
        try:
            have = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            print(f"-   {name}: not installed in the venv yet")
            continue
        if have != want:
            fail(f"the venv holds {name} {have}, .ci/tools.txt pins {want}")
        else:
            print(f"ok  {name} {have} installed")

    for name, how in sorted(installs.items()):
        if not how.startswith("ensure_rust_tool"):
            continue
        command = how.split()[1]
        exe, have = installed_rust_tool(command)
        if exe is None:
            print(f"-   {command}: not installed yet")
        elif have != pins.get(name):
            fail(f"cargo runs {exe} {have}, .ci/tools.txt pins {pins.get(name)}")
        else:
            print(f"ok  {command} {have} ({exe})")


if __name__ == "__main__":
    main()
    print("tools: ok" if not failures else f"tools: {len(failures)} failures")
    sys.exit(1 if failures else 0)
