"""The package's layout: the product runs without the simulator's extra (`websockets`)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import dhanfeed

LIB = Path(dhanfeed.__file__).resolve().parent

# The simulator and the two programs that exist to run it; everything else is the product.
SIMULATOR_SIDE = ("dhanfeed.sim", "dhanfeed.cli.dhan_sim", "dhanfeed.cli.demo")


def is_product(module: str) -> bool:
    return not any(module == side or module.startswith(side + ".") for side in SIMULATOR_SIDE)


def all_modules() -> list[str]:
    found = pkgutil.walk_packages([str(LIB)], prefix="dhanfeed.")
    return ["dhanfeed", *sorted(info.name for info in found)]


# Importing a name mapped to None in sys.modules fails as if it were not installed.
WITHOUT_WEBSOCKETS = "import sys; sys.modules['websockets'] = None\n"


def run_without_websockets(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_WEBSOCKETS + code],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_every_product_module_imports_without_the_simulators_extra() -> None:
    product = [m for m in all_modules() if is_product(m)]
    assert "dhanfeed.cli.collector" in product and "dhanfeed.cli.renew_token" in product
    done = run_without_websockets(
        f"import importlib\nfor m in {product!r}: importlib.import_module(m)\nprint('ok')"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_the_simulator_without_its_extra_says_which_extra_to_install_in_one_line() -> None:
    done = run_without_websockets("import runpy; runpy.run_module('dhanfeed.cli.dhan_sim')")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "pip install 'dhanfeed[sim]'" in done.stderr
