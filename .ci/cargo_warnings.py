"""Fail a cargo build on any warning of the workspace's own code, as `cargo clippy -- -D
warnings` does, when the lints run inside the build (RUSTC_WORKSPACE_WRAPPER=clippy-driver).

Reads cargo's JSON messages (`--message-format=json-diagnostic-rendered-ansi`) on stdin,
prints every diagnostic as cargo would and any other line as it is, and exits 1 when a warning
was reported. Dependencies never show up: cargo caps their lints, and replays a cached crate's
warnings, so a second build fails the same way as the first.

Usage: cargo test --no-run --message-format=json-diagnostic-rendered-ansi | python3 .ci/cargo_warnings.py
"""

import json
import sys


def main() -> int:
    warnings = 0
    for line in sys.stdin:
        try:
            message = json.loads(line)
        except ValueError:
            print(line, end="")
            continue
        if message.get("reason") != "compiler-message":
            continue
        diagnostic = message["message"]
        print(diagnostic["rendered"], end="", flush=True)
        warnings += diagnostic["level"] == "warning"
    if warnings:
        print(
            f"{warnings} warning(s) from clippy or rustc in the workspace: fix them "
            "(this is `cargo clippy --all-targets -- -D warnings`)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
