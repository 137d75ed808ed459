"""Benchmarks add lines to one summary, printed after pytest-benchmark's own tables."""

import pytest

SUMMARY = pytest.StashKey[list]()


@pytest.fixture(scope="session")
def summary_lines(request) -> list:
    return request.config.stash.setdefault(SUMMARY, [])


def pytest_terminal_summary(terminalreporter, config):
    for line in config.stash.get(SUMMARY, []):
        terminalreporter.write_line(line)
