#!/usr/bin/env python3
"""Every relative link and anchor in the repository's Markdown files resolves.

    python3 .ci/markdown_links.py ROOT          check the Markdown files git tracks under ROOT
    python3 .ci/markdown_links.py --self-test   show that a broken file link and a broken anchor fail

A link to a file that does not exist, or to a heading that does not exist (in the same file or
in another Markdown file), is reported with its file and line, and the exit status is 1.
Anchors follow GitHub's rules: the heading text lowercased, punctuation other than `-` and `_`
dropped, spaces turned into `-`, and a repeated heading numbered `-1`, `-2`, ….
External links (a scheme such as https: or mailto:) are not fetched: the machine has no web.
"""

import os
import re
import subprocess
import sys
import tempfile

INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEFINITION = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")
FENCE = re.compile(r"^\s{0,3}(```|~~~)")
INLINE_CODE = re.compile(r"`+[^`]*`+")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def slug(heading):
    """GitHub's anchor for a heading's text."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    text = text.replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def lines_outside_code(path):
    """(line number, text) of each line that is not inside a fenced code block."""
    fenced = False
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if FENCE.match(line):
                fenced = not fenced
                continue
            if not fenced:
                yield number, line


def anchors(path):
    seen = {}
    found = set()
    for _, line in lines_outside_code(path):
        found.update(HTML_ANCHOR.findall(line))
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path):
    for number, line in lines_outside_code(path):
        definition = REFERENCE_DEFINITION.match(line)
        if definition:
            yield number, definition.group(1)
            continue
        for target in INLINE_LINK.findall(INLINE_CODE.sub("", line)):
            yield number, target


def check(root, files):
    problems = []
    anchor_cache = {}

    def anchors_of(path):
        if path not in anchor_cache:
            anchor_cache[path] = anchors(path)
        return anchor_cache[path]

    for relative in files:
        source = os.path.join(root, relative)
        for number, target in links(source):
            if SCHEME.match(target) or target.startswith("//"):
                continue
            file_part, _, anchor = target.partition("#")
            destination = (
                os.path.normpath(os.path.join(os.path.dirname(source), file_part))
                if file_part
                else source
            )
            where = f"{relative}:{number}: {target}"
            if not os.path.exists(destination):
                problems.append(f"{where}: no such file")
            elif anchor and destination.endswith(".md") and anchor not in anchors_of(destination):
                problems.append(f"{where}: no heading with anchor #{anchor}")
    return problems


def markdown_files(root):
    listed = subprocess.run(
        ["git", "-C", root, "ls-files", "--cached", "--others", "--exclude-standard", "*.md"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return [path for path in listed if os.path.exists(os.path.join(root, path))]


def self_test():
    """The checker fails on a missing file and on a missing anchor, and passes a good tree."""
    with tempfile.TemporaryDirectory() as root:
        os.makedirs(os.path.join(root, "docs"))
        with open(os.path.join(root, "docs", "guide.md"), "w", encoding="utf-8") as handle:
            handle.write("# Guide\n\n## Run it, fast!\n\n## Run it, fast!\n")
        good = (
            "# Top\n\n## `Config` & such\n\n[a](docs/guide.md#run-it-fast-1) [b](#config--such)\n"
            "```\n[not a link](missing.md)\n```\n[c]: docs/guide.md#guide\n[web](https://x.invalid/y)\n"
        )
        with open(os.path.join(root, "README.md"), "w", encoding="utf-8") as handle:
            handle.write(good)
        assert check(root, ["README.md", "docs/guide.md"]) == [], "a good tree must pass"
        for broken, expected in (
            ("[a](docs/missing.md)", "no such file"),
            ("[a](docs/guide.md#run-it-slowly)", "no heading"),
            ("[a](#top-1)", "no heading"),
        ):
            with open(os.path.join(root, "README.md"), "w", encoding="utf-8") as handle:
                handle.write(good + broken + "\n")
            problems = check(root, ["README.md"])
            assert len(problems) == 1 and expected in problems[0], (broken, problems)
    print("markdown link check: self-test passed (a missing file and missing anchors fail)")


def main():
    if sys.argv[1:] == ["--self-test"]:
        self_test()
        return 0
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    files = markdown_files(root)
    problems = check(root, files)
    for problem in problems:
        print(problem)
    print(f"markdown link check: {len(files)} files, {len(problems)} broken links")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
