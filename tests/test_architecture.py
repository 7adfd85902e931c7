"""The package's layout, read from its imports (ast, every import statement, function-level
ones included): the direction between the parts of backbones/, and no import cycle anywhere
in backbones/, mm_common/, tools/, detection/ and segmentation/."""
import ast
from pathlib import Path
from typing import Dict, List, Set

import pytest

from conftest import ROOT

PACKAGE = 'mm_efficient_backbones'
FOLDERS = ('backbones', 'mm_common', 'tools', 'detection', 'segmentation')
MM_LIBRARIES = ('mmengine', 'mmcv', 'mmdet', 'mmseg', 'mmdeploy')
# The parts of backbones/, each importing only itself and the parts before it; errors.py is
# the one error base that every part shares, and backbones/__init__.py assembles them.
PARTS = ('errors', 'models', 'weights', 'export', 'benchmarking')


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix('').parts
    if parts[-1] == '__init__':
        parts = parts[:-1]
    return '.'.join((PACKAGE,) + parts)


def package_of(name: str, path: Path) -> str:
    return name if path.name == '__init__.py' else name.rsplit('.', 1)[0]


MODULES: Dict[str, Path] = {module_name(path): path for folder in FOLDERS
                            for path in sorted((ROOT / folder).rglob('*.py'))}


def imported_names(name: str, path: Path) -> Set[str]:
    """Every module ``path`` names in an import statement, as an absolute name: ``from a
    import b`` names ``a.b`` where that is a module of ours, else ``a`` (its __init__)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                package = package_of(name, path).split('.')
                package = package[:len(package) - node.level + 1]
                base = '.'.join(package + ([base] if base else []))
            for alias in node.names:
                names.add(f'{base}.{alias.name}' if f'{base}.{alias.name}' in MODULES else base)
    return names


GRAPH: Dict[str, Set[str]] = {name: {m for m in imported_names(name, path) if m in MODULES}
                              for name, path in MODULES.items()}
IMPORTS: Dict[str, Set[str]] = {name: imported_names(name, path) for name, path in MODULES.items()}


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The strongly connected components with more than one module, or a module importing itself
    (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1 or node in graph[node]:
                found.append(sorted(component))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def part_of(name: str):
    """The part of backbones/ that module ``name`` belongs to (None: outside backbones/,
    or backbones/__init__ itself)."""
    prefix = f'{PACKAGE}.backbones.'
    return name[len(prefix):].split('.')[0] if name.startswith(prefix) else None


def test_the_graph_is_read():
    """The test sees the edges the layout rests on (a parser that saw nothing would pass)."""
    assert len(MODULES) > 40
    assert f'{PACKAGE}.backbones.models.registry' in GRAPH[f'{PACKAGE}.backbones.models.recnext']
    assert f'{PACKAGE}.backbones.models.recnext' in GRAPH[f'{PACKAGE}.backbones.models.repnext']
    assert f'{PACKAGE}.backbones.models.specs' in GRAPH[f'{PACKAGE}.mm_common.analysis']
    # function-level imports count too
    assert f'{PACKAGE}.mm_common.checkpoint_fit' in GRAPH[f'{PACKAGE}.mm_common.runtime']
    assert cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == [['a', 'b', 'c']]


def test_no_import_cycle_anywhere_in_the_package():
    found = cycles(GRAPH)
    assert not found, 'import cycles: ' + '; '.join(' <-> '.join(component) for component in found)


@pytest.mark.parametrize('name', sorted(name for name in MODULES if part_of(name) in PARTS))
def test_each_part_of_backbones_imports_only_the_parts_before_it(name):
    part = part_of(name)
    allowed = PARTS[:PARTS.index(part) + 1]
    for other in sorted(GRAPH[name]):
        assert part_of(other) in allowed, (
            f'{name} ({part}) imports {other}: {part} may import only {", ".join(allowed)}')


def test_models_and_layers_import_nothing_from_the_other_parts():
    models = [name for name in MODULES if part_of(name) == 'models']
    assert f'{PACKAGE}.backbones.models.layers.oriented_conv' in models
    for name in models:
        assert all(part_of(other) in ('models', 'errors') for other in GRAPH[name]), (name, GRAPH[name])


def test_backbones_has_no_mm_imports_and_no_import_of_the_glue():
    for name in (name for name in MODULES if name.startswith(f'{PACKAGE}.backbones')):
        for other in IMPORTS[name]:
            assert other.split('.')[0] not in MM_LIBRARIES, f'{name} imports {other}'
            assert not other.startswith((f'{PACKAGE}.mm_common', f'{PACKAGE}.tools', f'{PACKAGE}.detection',
                                         f'{PACKAGE}.segmentation')), f'{name} imports {other}'


def test_no_tool_imports_another():
    tools = [name for name in MODULES if name.startswith(f'{PACKAGE}.tools.')]
    for name in tools:
        others = {other for other in GRAPH[name] if other.startswith(f'{PACKAGE}.tools')}
        assert not others, f'{name} imports {others}'
