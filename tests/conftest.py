"""Shared fixtures: the real simulator over loopback, the renew_token fixtures, a real
PostgreSQL server, and the end-of-suite secrets scan. What tests import lives in
tests/support/, not here."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.pg_cluster import Cluster, find_bindir
from support.scheduling import slow_first
from support.secret_scan import leaks
from support.sim import Sim, launch_sim

pytest_plugins = ["support.renew"]  # the `run` and `clean_environment` fixtures


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under `make test`'s pytest-xdist scheduling, slow tests first (support/scheduling.py);
    a serial run keeps the files' order."""
    if hasattr(config, "workerinput") and config.getoption("maxschedchunk") == 1:
        items[:] = slow_first(items)


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_what_the_suite_wrote(tmp_path_factory) -> Iterator[None]:
    """After the last test: no log, alert, metrics or status file under pytest's temporary
    root holds a token, the PIN or the TOTP seed (a failure shows at the last teardown).
    Under pytest-xdist each worker scans its own root after its own last test: the tests it
    ran wrote there, and the tokens they made are in its memory."""
    yield
    found = leaks(tmp_path_factory.getbasetemp())
    assert found == [], "secrets in files the suite wrote:\n" + "\n".join(found)


@pytest.fixture
def start_sim() -> Iterator:
    """Factory: `sim = start_sim('--token-ttl', '90s')`; every simulator is stopped at the end."""
    started: list[Sim] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Sim:
        sim = launch_sim(*args, env=env)
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


@pytest.fixture
def sim(start_sim) -> Sim:
    """A simulator with default options."""
    return start_sim()


def pg_bindir() -> Path:
    """The PostgreSQL server binaries; skip (fail in CI, which installs them) when missing."""
    bindir = find_bindir()
    if bindir is None:
        reason = (
            "PostgreSQL server binaries (initdb, pg_ctl) not found: install Debian's"
            " 'postgresql' package (.ci/run does) or set $PG_BINDIR"
        )
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return bindir


def running_cluster() -> Iterator[Cluster]:
    cluster = Cluster(pg_bindir())
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """One throwaway PostgreSQL server for the session (each test takes its own database)."""
    yield from running_cluster()


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> str:
    """The URL of a new, empty database on the session's server."""
    return pg_cluster.new_database()


@pytest.fixture
def private_pg_cluster() -> Iterator[Cluster]:
    """A server of the test's own, for tests that stop and start it."""
    yield from running_cluster()
