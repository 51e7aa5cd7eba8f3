"""The README's reference parts are the code's: every config key it names exists, every key
exists in it, every default it states is the one the code applies, and it names every library
pyproject.toml depends on."""

from __future__ import annotations

import dataclasses
import re
import tomllib
import typing
from pathlib import Path

import pytest

from dhanfeed.config import Config
from dhanfeed.config_load import load_config

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
PYPROJECT = ROOT / "pyproject.toml"
# The part of the README that documents config.toml: step 2 of "Running it against your account".
CONFIG_DOCS = README.split("**2. Write `config.toml`**", 1)[1].split("**3. ", 1)[0]
EXAMPLE = re.search(r"```toml\n(.*?)```", CONFIG_DOCS, re.S).group(1)
OTHER_KEYS = CONFIG_DOCS.split("Other keys, with their defaults:", 1)[1]


def code_keys() -> set[tuple[str, str]]:
    hints = typing.get_type_hints(Config)
    return {
        (section, field.name)
        for section, cls in hints.items()
        if dataclasses.is_dataclass(cls)
        for field in dataclasses.fields(cls)
    }


def other_keys() -> dict[tuple[str, str], str | None]:
    """`[token] confirm_with_profile = true`, `confirm_every = "6h"`, `[totp] pin_file`, ...:
    each backticked key with its stated default (None when none is stated), in its section."""
    found: dict[tuple[str, str], str | None] = {}
    section = None
    for item in re.findall(r"`([^`]+)`", OTHER_KEYS):
        if heading := re.match(r"\[(\w+)\]\s*", item):
            section, item = heading.group(1), item[heading.end() :]
        key, _, default = item.partition("=")
        found[(section, key.strip())] = default.strip() or None
    return found


def documented_keys() -> set[tuple[str, str]]:
    """Step 2's example and list, and every other TOML block (a feature's own section)."""
    shown = set(other_keys())
    for block in [EXAMPLE, *re.findall(r"```toml\n(.*?)```", README, re.S)]:
        shown |= {
            (section, key) for section, table in tomllib.loads(block).items() for key in table
        }
    return shown


def test_every_config_key_is_documented_in_the_readme():
    assert code_keys() - documented_keys() == set()


def test_every_key_the_readme_documents_exists():
    assert documented_keys() - code_keys() == set()


@pytest.mark.parametrize(
    "section, key, default",
    [(s, k, d) for (s, k), d in other_keys().items() if d is not None],
    ids=lambda value: str(value),
)
def test_each_default_the_readme_states_is_the_one_the_code_applies(
    tmp_path, section, key, default
):
    config = tmp_path / "config.toml"
    config.write_text('[dhan]\nclient_id = "1000000001"\n')
    defaults = load_config(config)
    stated: dict[str, dict[str, str]] = {"dhan": {"client_id": '"1000000001"'}}
    stated.setdefault(section, {})[key] = default
    config.write_text(
        "".join(
            f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in table.items())
            for name, table in stated.items()
        )
    )
    as_stated = load_config(config)
    assert getattr(getattr(as_stated, section), key) == getattr(getattr(defaults, section), key)


def requirement_names() -> set[str]:
    """Every dependency in pyproject.toml, core and extras, as the README spells it."""
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements += extra
    return {re.match(r"[A-Za-z0-9_.-]+(\[\w+\])?", r).group(0) for r in requirements}


def test_the_readme_names_every_library_it_depends_on_and_why():
    libraries = README.split("## Libraries it uses, and why", 1)[1].split("\n## ", 1)[0]
    assert {name for name in requirement_names() if f"`{name}`" not in libraries} == set()
