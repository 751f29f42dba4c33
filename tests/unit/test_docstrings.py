"""The package's docstring examples are tests: each module is imported by its real name.

(pytest's --doctest-modules would import ``streams/x.py`` as ``streams.x``,
a second copy beside the installed ``driftline.streams.x``.)
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import driftline

PACKAGES = ["driftline", "driftline.commands", "driftline.connectors", "driftline.streams", "driftline.schemas", "driftline.baselines"]


def modules() -> list[str]:
    names: list[str] = []
    for package in PACKAGES:
        mod = importlib.import_module(package)
        names.append(package)
        for info in pkgutil.walk_packages(mod.__path__, prefix=f"{package}."):
            if info.name not in names and not info.name.endswith("__main__"):
                names.append(info.name)
    return sorted(set(names))


@pytest.mark.parametrize("name", modules())
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples failed in {name}"


def test_version_is_exposed() -> None:
    assert driftline.__version__
