"""The CI rule: a test may skip on a developer's machine when a system binary (nginx,
chromium) is missing, but CI installs them all, so when ``CI`` is set in the environment
any skip is turned into a failure that says why.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

SKIP_IN_CI = (
    "skipped while CI is set ({reason}). CI must run every test: install what it needs in .ci/run."
)


def _fail_skip_in_ci(report: pytest.TestReport | pytest.CollectReport) -> None:
    if report.skipped and os.environ.get("CI"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        reason = str(reason).removeprefix("Skipped: ")
        report.outcome = "failed"
        report.longrepr = SKIP_IN_CI.format(reason=reason)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport() -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    _fail_skip_in_ci(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report() -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield
    _fail_skip_in_ci(report)
    return report
