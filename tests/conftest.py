"""Shared fixtures: the real simulator over loopback, the renew_token fixtures, and the
end-of-suite secrets scan. What tests import lives in tests/support/, not here."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.secret_scan import leaks
from support.sim import Sim, launch_sim

pytest_plugins = ["renew_support"]  # the `run` and `clean_environment` fixtures


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_what_the_suite_wrote(tmp_path_factory) -> Iterator[None]:
    """After the last test: no log, alert, metrics or status file under pytest's temporary
    root holds a token, the PIN or the TOTP seed (a failure shows at the last teardown)."""
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
