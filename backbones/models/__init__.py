"""The model families and their layers (pure PyTorch + timm; nothing of the package's other
parts, which import this one).

Importing this package imports every module in it, so that each family file registers its
record (:mod:`.registry`) and its timm models: a new family is one new file here. The
tables derived from the records (types, models, releases, specs) are read from
:mod:`.registry`; :mod:`.specs` turns a model name or ``TYPE:ARCH[:VARIANT]`` into a model.
"""
import importlib
import pkgutil

from . import registry

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f'{__name__}.{_module.name}')
