"""pytest plugin (loaded by .ci/lib.sh through PYTEST_ADDOPTS): every skipped test by its node
id and reason, printed and recorded for the stage's verdict (.ci/skips.py), instead of a count.
A test marked xfail that fails is a skip too: it checked nothing the run can rely on."""

from pathlib import Path

import skips

ROOT = Path(__file__).resolve().parents[1]


def name_of(report, rootpath):
    """The node id with its file relative to the repository, whatever pytest's rootdir."""
    path, sep, rest = report.nodeid.partition("::")
    try:
        path = (rootpath / path).resolve().relative_to(ROOT).as_posix()
    except ValueError:
        pass
    return path + sep + rest


def pytest_terminal_summary(terminalreporter):
    reports = terminalreporter.stats.get("skipped", []) + terminalreporter.stats.get("xfailed", [])
    if not reports:
        return
    terminalreporter.section("skipped tests, by name")
    for report in reports:
        if hasattr(report, "wasxfail"):
            reason = f"xfail: {report.wasxfail}"
        elif isinstance(report.longrepr, tuple):
            reason = report.longrepr[2].removeprefix("Skipped: ")
        else:
            reason = str(report.longrepr)
        skips.record(name_of(report, terminalreporter.config.rootpath), reason)
