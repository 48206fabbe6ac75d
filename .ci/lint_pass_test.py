"""The rust stage lints inside the test build (clippy-driver as the workspace's rustc, see
.ci/stages/rust.sh); this checks that the pass fails on what `cargo clippy -- -D warnings`
fails on, on a scratch crate built the same way:

- a clippy lint fails it, on the first build and again when cargo replays the cached warning;
- a rustc warning fails it;
- clean code passes;
- the same code built without the driver passes, so it is the driver that brings the lints;
- .ci/lib.sh hands the driver to every stage.

Usage: python3 .ci/lint_pass_test.py REPO_ROOT
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(sys.argv[1]).resolve()
FILTER = ROOT / ".ci" / "cargo_warnings.py"
failures = []

CLIPPY_LINT = "pub fn size(v: &Vec<u8>) -> usize {\n    v.len()\n}\n"  # clippy::ptr_arg
RUSTC_WARNING = "pub fn size(v: &[u8]) -> usize {\n    let unused = 1;\n    v.len()\n}\n"
CLEAN = "pub fn size(v: &[u8]) -> usize {\n    v.len()\n}\n"


def driver_from_lib_sh():
    out = subprocess.run(
        ["bash", "-c", 'source "$1/.ci/lib.sh" && printf %s "${RUSTC_WORKSPACE_WRAPPER:-}"', "bash", ROOT],
        capture_output=True, text=True, check=True,
    )
    return out.stdout


def lint_pass(crate, source, wrapper):
    (crate / "src" / "lib.rs").write_text(source)
    env = {**os.environ, "CARGO_TARGET_DIR": str(crate / "target")}
    env.pop("RUSTC_WORKSPACE_WRAPPER", None)
    if wrapper:
        env["RUSTC_WORKSPACE_WRAPPER"] = wrapper
    build = subprocess.Popen(
        ["cargo", "build", "--offline", "--message-format=json-diagnostic-rendered-ansi"],
        cwd=crate, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    result = subprocess.run([sys.executable, FILTER], stdin=build.stdout, capture_output=True, text=True)
    build.wait()
    return result.returncode, result.stdout + result.stderr


def expect(what, got, want_code, want_text=""):
    code, output = got
    if code != want_code or want_text not in output:
        failures.append(f"{what}: exit {code}, want {want_code}{f' naming {want_text}' if want_text else ''}\n{output[-2000:]}")
    else:
        print(f"ok: {what}")


def main():
    driver = driver_from_lib_sh()
    if not driver.endswith("clippy-driver"):
        failures.append(f".ci/lib.sh sets RUSTC_WORKSPACE_WRAPPER={driver!r}, not clippy-driver")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            crate = Path(tmp) / "scratch"
            (crate / "src").mkdir(parents=True)
            (crate / "Cargo.toml").write_text('[package]\nname = "scratch"\nversion = "0.1.0"\nedition = "2021"\n')
            expect("a clippy lint fails the pass", lint_pass(crate, CLIPPY_LINT, driver), 1, "clippy::ptr_arg")
            expect("a cached clippy warning fails it again", lint_pass(crate, CLIPPY_LINT, driver), 1, "clippy::ptr_arg")
            expect("a rustc warning fails the pass", lint_pass(crate, RUSTC_WARNING, driver), 1, "unused_variables")
            expect("clean code passes", lint_pass(crate, CLEAN, driver), 0)
            expect("without the driver the clippy lint is not seen", lint_pass(crate, CLIPPY_LINT, None), 0)
    for failure in failures:
        print("FAIL", failure)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
