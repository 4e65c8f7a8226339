"""Lets ``from src.infrastructure.monitoring import ...`` work from the repository root.

The installed package is ``infrastructure``; the design's examples import it as
``src.infrastructure``. Importing both spellings as two packages would give two
copies of every module, two factory singletons and two sets of open files. So every
``src.infrastructure...`` import is answered with the very module object of the
``infrastructure...`` spelling: one package, two names.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from types import ModuleType

_PREFIX = __name__ + ".infrastructure"
_HERE = os.path.dirname(os.path.abspath(__file__))


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, real: ModuleType) -> None:
        self.real_name = real.__name__
        self._real_spec = real.__spec__

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(self.real_name)

    def exec_module(self, module: ModuleType) -> None:
        # The import system stamped the alias spec on the shared module: put the real one back.
        module.__spec__ = self._real_spec
        module.__name__ = self.real_name


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != _PREFIX and not fullname.startswith(_PREFIX + "."):
            return None
        real = fullname[len(__name__) + 1 :]
        module = importlib.import_module(real)
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(module), is_package=hasattr(module, "__path__"))


if importlib.util.find_spec("infrastructure") is None:  # running from a checkout, not installed
    sys.path.append(_HERE)
if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _AliasFinder())
