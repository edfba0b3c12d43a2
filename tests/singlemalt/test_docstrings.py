"""The ``>>>`` usage examples in module docstrings are true, and every public name has a docstring."""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil

import pytest

import singlemalt

MODULES = sorted(info.name for info in pkgutil.iter_modules(singlemalt.__path__))


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    module = importlib.import_module(f"singlemalt.{name}")
    assert module.__doc__, f"singlemalt.{name} has no module docstring"
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


@pytest.mark.parametrize("name", sorted(singlemalt.__all__))
def test_public_names_are_documented(name: str) -> None:
    obj = getattr(singlemalt, name)
    if inspect.isclass(obj) or inspect.isfunction(obj):
        assert inspect.getdoc(obj), f"{name} has no docstring"
