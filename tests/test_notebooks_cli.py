import json, os, shutil, subprocess, sys
from pathlib import Path
import pytest
from conftest import ROOT, needs_data

PAPERMILL_NBS = ['eval.ipynb', 'eval_retrieval.ipynb', 'bench.ipynb', 'bench_train.ipynb', 'train.ipynb', 'augment.ipynb', 'reports.ipynb']

def test_papermill_notebooks_keep_parameters_cell():
    found = [p for p in (ROOT/'nbs').glob('*.ipynb') if p.name in PAPERMILL_NBS]
    assert any(p.name == 'eval.ipynb' for p in found)
    for p in found:
        cells = json.loads(p.read_text())['cells']
        tagged = [c for c in cells if 'parameters' in c.get('metadata', {}).get('tags', [])]
        assert len(tagged) == 1, f'{p.name}: papermill needs exactly one cell tagged "parameters"'
        assert 'kernelspec' in json.loads(p.read_text())['metadata'], f'{p.name}: papermill needs a kernelspec'

def test_nbdev_config_keeps_tags():
    import tomllib
    cfg = tomllib.loads((ROOT/'pyproject.toml').read_text())['tool']['nbdev']
    assert 'tags' in cfg['allowed_cell_metadata_keys']

def test_clean_keeps_parameters_tag(tmp_path):
    "nbdev-clean on a copy of the project must not strip papermill's tag."
    shutil.copytree(ROOT/'nbs', tmp_path/'nbs'); shutil.copy(ROOT/'pyproject.toml', tmp_path)
    subprocess.run(['nbdev-clean'], cwd=tmp_path, check=True, capture_output=True)
    cells = json.loads((tmp_path/'nbs'/'eval.ipynb').read_text())['cells']
    assert any('parameters' in c.get('metadata', {}).get('tags', []) for c in cells)

def test_package_in_sync_with_notebooks(tmp_path):
    "Exporting the notebooks again reproduces the committed package exactly."
    for d in ('nbs', 'hybrid_xir'): shutil.copytree(ROOT/d, tmp_path/d)
    shutil.copy(ROOT/'pyproject.toml', tmp_path)
    subprocess.run(['nbdev-export'], cwd=tmp_path, check=True, capture_output=True)
    for f in (ROOT/'hybrid_xir').glob('*.py'):
        assert (tmp_path/'hybrid_xir'/f.name).read_text() == f.read_text(), f'{f.name} is out of sync with nbs/: run nbdev-export'

@needs_data
def test_papermill_eval_smoke(tmp_path):
    import papermill as pm
    out = tmp_path/'eval_out.ipynb'
    pm.execute_notebook(str(ROOT/'nbs'/'eval.ipynb'), str(out), cwd=str(ROOT),
                        parameters=dict(model='pretrained', dataset='mlqa-r', limit=12, out_dir=str(tmp_path/'res')),
                        progress_bar=False, kernel_name='python3')
    res = tmp_path/'res'/'pretrained'/'mlqa-r-limit12'          # the injected parameters were used
    m = json.loads((res/'metrics.json').read_text())
    assert 30 < m['summary']['n_pairs'] <= 42 and 0 <= m['summary']['multi mAP'] <= 1
    assert (res/'pairs_heatmap.png').stat().st_size > 1000 and (res/'rank_distance.png').stat().st_size > 1000
    nb = json.loads(out.read_text())
    assert any('injected-parameters' in c.get('metadata', {}).get('tags', []) for c in nb['cells'])

def _cli(*args):
    code = 'import sys; from hybrid_xir.cli import main; sys.exit(main(sys.argv[1:]))'
    return subprocess.run([sys.executable, '-c', code, *args], capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ))

@needs_data
def test_cli_eval(tmp_path):
    r = _cli('eval', '--dataset', 'xquad-r', '--limit', '8', '--out-dir', str(tmp_path), '--no-progress', '--trec', '--k-ap', '20')
    assert r.returncode == 0, r.stderr
    assert 'mono mAP' in r.stdout and 'rank dist' in r.stdout
    d = tmp_path/'pretrained'/'xquad-r-limit8'
    assert (d/'run.multi.trec').exists() and (d/'qrels.multi.trec').exists()
    assert json.loads((d/'metrics.json').read_text())['k_ap'] == 20

def test_cli_errors_are_one_line():
    r = _cli('eval', '--model', 'no-such-model')
    assert r.returncode == 2 and r.stderr.startswith("hybrid-xir: error: unknown model 'no-such-model'")
    assert 'Traceback' not in r.stderr
    r = _cli('stats', 'xquad-r', '--data-dir', '/nonexistent/dir')
    assert (r.returncode == 2 and 'Looked in' in r.stderr) or r.returncode == 0

def test_library_notebooks_execute():
    "Every library notebook runs top to bottom (its examples and asserts); experiment notebooks are run above."
    r = subprocess.run(['nbdev-test', '--skip-file-re', r'^(_|\.|eval|eval_retrieval|bench|bench_train|train|augment|reports)\b'], cwd=ROOT,
                       capture_output=True, text=True, env=dict(os.environ))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]

def test_readme_results_match_reports():
    from hybrid_xir.reports import results_block, README_START, README_END
    s = (ROOT/'README.md').read_text()
    block = s[s.index(README_START):s.index(README_END)].split('\n', 1)[1]
    assert block == results_block(ROOT/'reports'/'eval'), 'README results are stale: run `hybrid-xir readme`'

def test_readme_opens_with_two_commands():
    s = (ROOT/'README.md').read_text()
    first = s.split('```bash\n', 1)[1].split('```', 1)[0]
    cmds = [l for l in first.splitlines() if l.strip() and not l.startswith('#')]
    assert len(cmds) == 2 and 'hybrid-xir eval' in cmds[0] and 'pytest' in cmds[1]
    ci = (ROOT/'.ci'/'run').read_text()
    assert 'python3 -m pytest' in ci and 'torch==2.13.0' in ci
