"""Fixtures for the black-box tests: the real pylon binary, real echo backends.

`env` gives a test an Env (helpers.py) whose processes are always stopped at
teardown; a failing test gets the tail of every process log in its report,
and a sanitizer report in any log fails the test.
"""
import os

import pytest

import helpers


def pytest_configure(config):
    if not os.access(helpers.PYLON_BIN, os.X_OK):
        raise pytest.UsageError(f"pylon binary not found at {helpers.PYLON_BIN}: build it "
                                "(make build) or set PYLON_BIN")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    env = getattr(item, "_pylon_env", None)
    if env is not None and rep.failed:
        for name, text in env.logs():
            rep.sections.append((f"log of {name}", text))


@pytest.fixture
def env(request, tmp_path):
    e = helpers.Env(tmp_path)
    request.node._pylon_env = e
    yield e
    problems = e.stop_all()
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
def two_echoes(env):
    return env.echo("a-pod"), env.echo("b-pod")
