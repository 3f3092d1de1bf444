"""The package's import graph has no cycle, and the layers import in one direction only.

Every ``import`` statement of every module of ``mmlinattn`` counts, also those inside functions
(a lazy import hides a cycle from Python, not from a reader). A package counts as its
``__init__``; the implicit import of a module's parent packages does not.
"""
import ast
from pathlib import Path
from typing import Dict, List, Optional, Set

PACKAGE = Path(__file__).resolve().parents[1] / 'mmlinattn'


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def modules() -> Dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob('*.py')}


def _resolve(name: str, known: Set[str]) -> Optional[str]:
    """The longest prefix of ``name`` that is a module of the package."""
    parts = name.split('.')
    for end in range(len(parts), 0, -1):
        candidate = '.'.join(parts[:end])
        if candidate in known:
            return candidate
    return None


def import_graph() -> Dict[str, Set[str]]:
    known = modules()
    graph: Dict[str, Set[str]] = {name: set() for name in known}
    for name, path in known.items():
        is_package = path.name == '__init__.py'
        package = name if is_package else name.rpartition('.')[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets: List[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split('.')
                    base = base[:len(base) - (node.level - 1)]
                    prefix = '.'.join(base + ([node.module] if node.module else []))
                else:
                    prefix = node.module or ''
                # ``from pkg import sub`` imports the submodule ``pkg.sub`` when there is one.
                targets = [f'{prefix}.{alias.name}' for alias in node.names] + [prefix]
            for target in targets:
                resolved = _resolve(target, set(known))
                if resolved and resolved != name:
                    graph[name].add(resolved)
    return graph


def find_cycle(graph: Dict[str, Set[str]]) -> Optional[List[str]]:
    state: Dict[str, int] = {}
    stack: List[str] = []

    def visit(node: str) -> Optional[List[str]]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_graph_sees_lazy_imports():
    graph = import_graph()
    # base.py imports the converters inside init_weights only.
    assert 'mmlinattn.converters' in graph['mmlinattn.models.backbones.base']


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, 'import cycle: ' + ' -> '.join(cycle)


def test_cycle_finder_finds_one():
    assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == ['a', 'b', 'c', 'a']


def test_layers_import_in_one_direction():
    """ops know nothing of modules; converters never import a model; archs are plain data."""
    graph = import_graph()

    def reach(start: str) -> Set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    for name in graph:
        reached = reach(name)
        if name.startswith('mmlinattn.ops'):
            assert not any(
                m.startswith(('mmlinattn.models', 'mmlinattn.converters')) for m in reached), name
        if name.startswith('mmlinattn.converters'):
            assert not any(m.startswith('mmlinattn.models') for m in reached), name
    assert graph['mmlinattn.archs'] == set()
