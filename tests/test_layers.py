"The package's modules form layers that only point down: no import cycle, no package import hidden inside a function."
import ast
from pathlib import Path
import pytest

PKG = Path(__file__).resolve().parents[1]/'hybrid_xir'

def package_imports():
    "{module: [(imported module, line, at top level)]} of imports between hybrid_xir modules."
    mods = {p.stem for p in PKG.glob('*.py') if p.stem not in ('__init__', '_modidx')}
    out = {}
    for m in sorted(mods):
        tree = ast.parse((PKG/f'{m}.py').read_text())
        top = {id(n) for n in tree.body}
        found = []
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                name = node.module or ''
                if node.level == 1: target = name.split('.')[0]
                elif name.startswith('hybrid_xir.'): target = name.split('.')[1]
                elif name == 'hybrid_xir': target = None
                else: continue
                targets = [target] if target else [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name.split('.')[1] for a in node.names if a.name.startswith('hybrid_xir.')]
            else: continue
            found += [(t, node.lineno, id(node) in top) for t in targets if t in mods]
        out[m] = found
    return out

def test_no_package_import_inside_functions():
    inner = [f"{m}.py:{line} imports {t}" for m, imps in package_imports().items() for t, line, top in imps if not top]
    assert not inner, 'imports of package modules inside functions (move them to the top; a cycle is a layering bug):\n' + '\n'.join(inner)

def test_no_import_cycle():
    graph = {m: sorted({t for t, _, _ in imps}) for m, imps in package_imports().items()}
    state, stack = {}, []
    def visit(m):
        state[m] = 'open'; stack.append(m)
        for t in graph.get(m, []):
            if state.get(t) == 'open': pytest.fail('import cycle: ' + ' -> '.join(stack[stack.index(t):] + [t]))
            if t not in state: visit(t)
        state[m] = 'done'; stack.pop()
    for m in graph:
        if m not in state: visit(m)
    # the core is the bottom layer and the command line the top one
    assert graph['core'] == [] and not any('cli' in ts for ts in graph.values())

def test_the_cycle_check_finds_a_cycle(tmp_path, monkeypatch):
    "The check itself can fail: on a package with a -> b -> a it reports the cycle."
    (tmp_path/'a.py').write_text('from .b import x\n'); (tmp_path/'b.py').write_text('from .a import y\ndef f():\n    from .a import z\n')
    (tmp_path/'core.py').write_text('')
    monkeypatch.setattr(__import__(__name__), 'PKG', tmp_path)
    assert {t for t, _, _ in package_imports()['b']} == {'a'} and any(not top for _, _, top in package_imports()['b'])
    with pytest.raises(pytest.fail.Exception, match='import cycle: a -> b -> a'): test_no_import_cycle()
    with pytest.raises(AssertionError, match='b.py:3 imports a'): test_no_package_import_inside_functions()


def _library_notebooks():
    nbs = PKG.parent/'nbs'
    return sorted(p for p in nbs.glob('*.ipynb') if any('#| default_exp' in ''.join(c['source'])
                                                        for c in __import__('json').loads(p.read_text())['cells'][:3]))

def test_library_notebook_imports_stand_alone():
    """nbdev's processing (the docs) runs every cell that contains an import: a cell that also computes something would
    run then too, so imports live in cells of their own."""
    import json
    bad = []
    for nb in _library_notebooks():
        for i, c in enumerate(json.loads(nb.read_text())['cells']):
            if c['cell_type'] != 'code': continue
            body = '\n'.join(l for l in ''.join(c['source']).split('\n') if not l.lstrip().startswith(('%', '!')))
            kinds = [isinstance(n, (ast.Import, ast.ImportFrom)) for n in ast.parse(body).body]
            if any(kinds) and not all(kinds): bad.append(f'{nb.name} cell {i}')
    assert len(_library_notebooks()) >= 15 and not bad, bad

def test_library_notebooks_keep_outputs():
    "The notebooks are the documentation: every library notebook is committed executed, with its examples' outputs."
    import json
    empty = [nb.name for nb in _library_notebooks()
             if not any(c['cell_type'] == 'code' and c.get('outputs') for c in json.loads(nb.read_text())['cells'])]
    assert not empty, f'library notebooks without kept outputs (run `nbdev-test --save`, then nbdev-clean): {empty}'
