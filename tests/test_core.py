import os, subprocess, sys, textwrap
from pathlib import Path
import pytest
from hybrid_xir.core import atomic_dir, check_int, HybridXirError

_WRITER = textwrap.dedent('''
    import sys, json
    from hybrid_xir.core import atomic_dir
    fails = 0
    for i in range(int(sys.argv[3])):
        try:
            with atomic_dir(sys.argv[1]) as t:
                for k in range(4): (t/f'part{k}').write_text(f'{sys.argv[2]} {i}')
        except OSError as e: fails += 1
    print(json.dumps(fails))
''')

def test_atomic_dir_with_two_concurrent_writers(tmp_path):
    "Two processes publishing the same folder 300 times each: no write fails, and the folder is always one writer's whole."
    target = tmp_path/'out'
    ps = [subprocess.Popen([sys.executable, '-c', _WRITER, str(target), w, '300'], stdout=subprocess.PIPE, text=True) for w in 'ab']
    res = [p.communicate(timeout=300) for p in ps]
    assert [p.returncode for p in ps] == [0, 0] and [int(o) for o, _ in res] == [0, 0]
    parts = {p.name: p.read_text() for p in target.iterdir()}
    assert sorted(parts) == ['part0', 'part1', 'part2', 'part3'] and len(set(parts.values())) == 1
    leftovers = [p.name for p in tmp_path.iterdir() if p.name not in ('out', '.out.lock')]
    assert leftovers == []                      # no temporary or old folders left behind

def test_atomic_dir_failure_keeps_previous(tmp_path):
    with atomic_dir(tmp_path/'d') as t: (t/'x').write_text('old')
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path/'d') as t: (t/'x').write_text('half'); raise RuntimeError('killed')
    assert (tmp_path/'d'/'x').read_text() == 'old'

@pytest.mark.parametrize('value,kw,msg', [('abc', {}, 'must be an integer'), (-3, {}, 'at least 1'), (0, {}, 'at least 1'),
                                          (2.5, {}, 'must be an integer'), (True, {}, 'must be an integer'),
                                          (None, dict(optional=False), 'must be an integer, got None'), (9, dict(maximum=8), 'between 1 and 8')])
def test_check_int_errors(value, kw, msg):
    with pytest.raises(HybridXirError, match=msg): check_int(value, 'x', **kw)


def test_top_level_api_and_version():
    "The names a notebook user imports come from `hybrid_xir` itself (lazily); `hybrid-xir --version` prints the version."
    import subprocess, sys
    import hybrid_xir
    assert [n for n in hybrid_xir.__all__ if not hasattr(hybrid_xir, n)] == []
    r = subprocess.run([sys.executable, '-c', 'from hybrid_xir.cli import main; main(["--version"])'], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == f'hybrid-xir {hybrid_xir.__version__}'
