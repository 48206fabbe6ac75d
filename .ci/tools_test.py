"""One version of each tool for ./.ci/test and for the workflows.

- Every package a workflow installs with pip or pipx carries a version (`name==version`).
- Where the test command installs the same package (ensure_pip / ensure_rust_tool in
  .ci/stages/*.sh, or a dependency pinned in .ci/tools.txt), .ci/tools.txt pins it, to the same
  version as every workflow that installs it.
- What the test command has installed is what .ci/tools.txt pins: the packages in its venv, and
  the Rust tools as `cargo <subcommand>` would run them. A tool not installed yet is reported
  and recorded as a skip (its stage installs it; .ci/skips.py).
- One Rust toolchain: the `rust==` line of .ci/tools.txt is the tag of every `rust:` image the
  Dockerfile builds from, and every workflow job that runs cargo (or the test command) first
  installs that toolchain with rustup and makes it the default; no rustup command or
  `cargo +toolchain` names another one (`stable` moves under a pinned lock file and image).
  This machine's rustc is only reported: the test command cannot choose it.

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

import skips  # .ci/skips.py, beside this file

ROOT = Path(sys.argv[1]).resolve()
# The line of .ci/tools.txt that pins the Rust toolchain rather than a Python package (pip
# ignores a constraint on a package nothing asks for).
TOOLCHAIN = "rust"
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


def commands(run):
    """The simple commands of a run script, each as a list of words."""
    for command in re.split(r"\n|&&|\|\||;|\|", run or ""):
        try:
            words = shlex.split(command, comments=True)
        except ValueError:
            words = command.split()
        if words:
            yield words


def workflow_jobs():
    """[(workflow, job id, job)] for every job of every workflow."""
    jobs = []
    for path in sorted((ROOT / ".github/workflows").glob("*.yml")):
        doc = yaml.safe_load(path.read_text())
        for job_id, job in (doc.get("jobs") or {}).items():
            jobs.append((path.name, job_id, job))
    return jobs


def workflow_installs():
    """[(workflow, package, version or None)] for every pip/pipx install in a run step."""
    found = []
    for workflow, _, job in workflow_jobs():
        for step in job.get("steps") or []:
            for words in commands(step.get("run")):
                for i in range(len(words) - 1):
                    if words[i] in ("pip", "pip3", "pipx") and words[i + 1] == "install":
                        for arg in words[i + 2:]:
                            if arg.startswith("-"):
                                continue
                            name, sep, version = arg.partition("==")
                            found.append((workflow, canon(name.split("[")[0]), version if sep else None))
    return found


def check_dockerfile_toolchain(want):
    """Every `FROM rust:<tag>` of the Dockerfile builds with the pinned toolchain."""
    images = re.findall(r"^\s*FROM\s+(?:--\S+\s+)*(\S+)", (ROOT / "Dockerfile").read_text(), re.M | re.I)
    rust_images = [image for image in images if re.match(r"(?:docker\.io/)?(?:library/)?rust:", image)]
    if not rust_images:
        fail("Dockerfile: no `FROM rust:<version>` stage found; the parser found nothing")
    for image in rust_images:
        version = re.match(r"[^:]*:(\d+\.\d+\.\d+)(?:-|$)", image)
        if version is None:
            fail(f"Dockerfile builds from {image}, not from a rust:<x.y.z> tag (.ci/tools.txt pins {want})")
        elif version.group(1) != want:
            fail(f"Dockerfile builds from {image}, .ci/tools.txt pins Rust {want}")
        else:
            print(f"ok  Dockerfile builds from {image}")


def runs_cargo(words):
    """Whether a command runs cargo: itself, or through the test command or one of its stages."""
    return any(
        word == "cargo" or word.endswith(".ci/test") or re.search(r"\.ci/stages/\w+\.sh$", word)
        for word in words[:2]
    )


# rustup options that take a value, so the value is not read as a toolchain name.
RUSTUP_VALUE_OPTIONS = {"--profile", "--component", "-c", "--target", "-t", "--toolchain"}


def rustup_toolchains(words):
    """(subcommand, toolchains it names) for a rustup command line."""
    positional, toolchains, i = [], [], 1
    while i < len(words):
        word = words[i]
        if word in RUSTUP_VALUE_OPTIONS:
            if word == "--toolchain" and i + 1 < len(words):
                toolchains.append(words[i + 1])
            i += 2
            continue
        if word.startswith("--toolchain="):
            toolchains.append(word.partition("=")[2])
        elif not word.startswith("-"):
            positional.append(word)
        i += 1
    if positional[:2] == ["toolchain", "install"]:
        return "install", toolchains + positional[2:]
    if positional[:1] == ["install"]:
        return "install", toolchains + positional[1:]
    if positional[:1] == ["default"] or positional[:2] == ["override", "set"]:
        return "default", toolchains + positional[1 if positional[0] == "default" else 2:]
    return " ".join(positional[:2]), toolchains


def check_workflow_toolchains(want):
    """Jobs that run cargo install the pinned toolchain and make it the default first."""
    jobs = 0
    for workflow, job_id, job in workflow_jobs():
        where = f"{workflow} job {job_id}"
        installed = ready = False
        first_cargo = None  # (the first command that runs cargo, whether the pin was ready)
        for step in job.get("steps") or []:
            action = (step.get("uses") or "").split("@")[0]
            if action in ("dtolnay/rust-toolchain", "actions-rs/toolchain", "actions-rust-lang/setup-rust-toolchain"):
                fail(f"{where}: {action} picks a toolchain of its own; install {want} with rustup")
            for words in commands(step.get("run")):
                if words[0] == "rustup":
                    subcommand, toolchains = rustup_toolchains(words)
                    for name in toolchains:
                        if name != want:
                            fail(f"{where}: `{' '.join(words)}` names Rust {name}, .ci/tools.txt pins {want}")
                    if subcommand == "install" and want in toolchains:
                        installed = True
                    if subcommand == "default" and toolchains == [want]:
                        ready = installed
                elif words[0] == "cargo" and len(words) > 1 and words[1].startswith("+") and words[1] != f"+{want}":
                    fail(f"{where}: `cargo {words[1]}`, .ci/tools.txt pins Rust {want}")
                if first_cargo is None and runs_cargo(words):
                    first_cargo = (" ".join(words[:3]), ready)
        if first_cargo is None:
            continue
        jobs += 1
        command, was_ready = first_cargo
        if was_ready:
            print(f"ok  {where}: cargo runs from Rust {want}")
        else:
            fail(f"{where} runs `{command}` without first `rustup toolchain install {want}` "
                 f"and `rustup default {want}` (.ci/tools.txt)")
    if jobs == 0:
        fail("no workflow job runs cargo or the test command; the parser found nothing")


def report_local_toolchain(want):
    """This machine's rustc, as cargo in the repository runs it: reported, not checked."""
    try:
        out = subprocess.run(["rustc", "--version"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    except FileNotFoundError:
        out = []
    have = out[1] if len(out) > 1 else "none"
    if have == want:
        print(f"ok  rustc {have} on this machine")
    else:
        print(f"note: this machine runs rustc {have}; the workflows and the image use {want}")


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

    rust = pins.pop(TOOLCHAIN, None)
    if rust is None:
        fail(f".ci/tools.txt pins no Rust toolchain ({TOOLCHAIN}==x.y.z)")
    else:
        check_dockerfile_toolchain(rust)
        check_workflow_toolchains(rust)
        report_local_toolchain(rust)

    for name, want in sorted(pins.items()):
        try:
            have = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            skips.record(f"tools:installed:{name}", "not installed in the venv yet (its stage installs it)")
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
            skips.record(f"tools:installed:{command}", "not installed yet (its stage installs it)")
        elif have != pins.get(name):
            fail(f"cargo runs {exe} {have}, .ci/tools.txt pins {pins.get(name)}")
        else:
            print(f"ok  {command} {have} ({exe})")


if __name__ == "__main__":
    main()
    print("tools: ok" if not failures else f"tools: {len(failures)} failures")
    sys.exit(1 if failures else 0)
