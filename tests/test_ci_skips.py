"""In CI nothing may be skipped: the ci_no_skips plugin turns a skip into a failure there."""

from __future__ import annotations

from pathlib import Path

import pytest

CONFTEST = Path(__file__).with_name("ci_no_skips.py").read_text()

SKIPPING = """
import pytest

def test_needs_a_binary():
    pytest.skip("needs frobnicate: apt-get install frobnicate")

@pytest.mark.skipif(True, reason="needs nginx: apt-get install nginx")
def test_marked():
    pass

def test_runs():
    pass
"""


def test_skips_are_reported_outside_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(SKIPPING)
    result = pytester.runpytest("-ra")
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(["*apt-get install frobnicate*"])


def test_skips_fail_in_ci(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(SKIPPING)
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=1, errors=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*skipped while CI is set (needs frobnicate: apt-get install frobnicate)*",
            "*skipped while CI is set (needs nginx: apt-get install nginx)*",
        ]
    )


def test_module_level_skip_fails_in_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile('import pytest\npytest.skip("no s3", allow_module_level=True)\n')
    result = pytester.runpytest()
    assert result.ret != pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*skipped while CI is set (*no s3*)*"])
