import json, os, shutil, subprocess, sys
from pathlib import Path
import pytest
from conftest import ROOT, needs_data
from hybrid_xir.data import DATASETS

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

@pytest.mark.slow
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

@pytest.mark.slow
@needs_data
def test_cli_eval(tmp_path):
    r = _cli('eval', '--dataset', 'xquad-r', '--limit', '8', '--out-dir', str(tmp_path), '--no-progress', '--trec', '--k-ap', '20')
    assert r.returncode == 0, r.stderr
    assert 'mono mAP' in r.stdout and 'rank dist' in r.stdout
    d = tmp_path/'pretrained'/'xquad-r-limit8-map@20'        # a partial run names itself: it cannot overwrite the full one
    assert (d/'run.multi.trec').exists() and (d/'qrels.multi.trec').exists()
    m = json.loads((d/'metrics.json').read_text())
    assert m['k_ap'] == 20 and m['scope'] == dict(langs=DATASETS['xquad-r']['langs'], limit=8, k_ap=20, full=False)

def test_cli_errors_are_one_line(tmp_path):
    r = _cli('eval', '--model', 'no-such-model')
    assert r.returncode == 2 and r.stderr.startswith("hybrid-xir: error: unknown model 'no-such-model'")
    assert 'Traceback' not in r.stderr
    r = subprocess.run([sys.executable, '-c', 'import sys; from hybrid_xir.cli import main; sys.exit(main(sys.argv[1:]))',
                        'stats', 'xquad-r', '--data-dir', str(tmp_path/'nonexistent')], capture_output=True, text=True, cwd=ROOT,
                       env=dict(os.environ, HYBRID_XIR_OFFLINE='1', HYBRID_XIR_DATA='', HYBRID_XIR_CACHE=str(tmp_path/'c')))
    assert r.returncode == 2 and 'Looked in' in r.stderr and 'Traceback' not in r.stderr

@pytest.mark.parametrize('args,msg', [
    (['--limit', '-3'], 'limit must be at least 1, got -3'), (['--limit', '0'], 'limit must be at least 1, got 0'),
    (['--batch-size', '0'], 'batch_size must be at least 1'), (['--batch-tokens', '0'], 'batch_tokens must be at least 1'),
    (['--max-seq-length', '-5'], 'max_seq_length must be at least 16'), (['--max-seq-length', '2'], 'max_seq_length must be at least 16'),
    (['--k-ap', '0'], 'k_ap must be at least 1'), (['--langs', 'en,xx'], r"unknown language code\(s\) \['xx'\]"),
    (['--model', 'hybrid@alpha=abc'], "alpha='abc' is not a valid float"), (['--model', 'hybrid@alpha=1.5'], 'alpha must be >= 0 and <= 1'),
    (['--model', 'xx@lr=-1'], 'lr must be > 0'), (['--model', 'xy@mode=bogus'], 'mode must be one of')])
def test_cli_bad_parameters_fail_before_any_work(args, msg, tmp_path, capsys, monkeypatch):
    import re, time
    from hybrid_xir.cli import main
    from hybrid_xir.core import cache_dir
    monkeypatch.setenv('HYBRID_XIR_OUT', str(tmp_path/'out'))
    monkeypatch.setenv('HYBRID_XIR_CACHE', str(tmp_path/'cache'))   # its own cache: other test workers train into the shared one
    runs = set(cache_dir('runs').iterdir())
    t = time.time()
    assert main(['eval', *args, '--no-progress']) == 2
    err = capsys.readouterr().err
    assert re.search(msg, err) and err.count('\n') == 1 and 'training it now' not in err, err
    assert time.time() - t < 5 and not (tmp_path/'out').exists() and set(cache_dir('runs').iterdir()) == runs

@pytest.mark.slow
@needs_data
def test_cli_interrupt_is_one_line(tmp_path):
    "Ctrl-C (SIGINT) during an evaluation ends with one line saying what was kept, exit status 130, and no results folder."
    import signal, time
    code = 'import sys; from hybrid_xir.cli import main; sys.exit(main(sys.argv[1:]))'
    p = subprocess.Popen([sys.executable, '-c', code, 'eval', '--dataset', 'mlqa-r', '--no-progress', '--out-dir', str(tmp_path)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                         env=dict(os.environ, HYBRID_XIR_CACHE=str(tmp_path/'cache'), PYTHONWARNINGS='ignore'),
                         # a background job of a non-interactive shell (CI run as `cmd &`) inherits SIGINT as ignored, and
                         # Python keeps an ignored SIGINT: give the child the default disposition that a terminal would
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    model = tmp_path/'cache'/'models'/'e5-small-original'
    for _ in range(240):                   # imports and conversion of the embedded model into the empty cache (one line)
        if (model/'hybrid_xir_conversion.json').exists() or p.poll() is not None: break
        time.sleep(0.5)
    time.sleep(3)                          # now encoding
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    lines = [l for l in err.splitlines() if l.strip()]
    # the first use of the embedded model says so in one line; the interrupt in one more
    assert p.returncode == 130 and len(lines) == 2, err[-3000:]
    assert lines[0].startswith('hybrid_xir: converting the embedded model') and lines[1].startswith('hybrid-xir: interrupted. Kept:'), err[-3000:]
    assert not (tmp_path/'pretrained').exists()
    from hybrid_xir.encode import conversion_intact
    assert conversion_intact(model)        # the conversion finished before the interrupt and stays usable

@pytest.mark.slow
@needs_data
def test_papermill_bad_parameter_is_one_clear_error(tmp_path):
    import papermill as pm
    with pytest.raises(pm.PapermillExecutionError, match='limit must be an integer or None'):
        pm.execute_notebook(str(ROOT/'nbs'/'eval.ipynb'), str(tmp_path/'o.ipynb'), cwd=str(ROOT), progress_bar=False,
                            kernel_name='python3', parameters=dict(model='pretrained', dataset='mlqa-r', limit='abc', out_dir=str(tmp_path)))

@needs_data
def test_subset_runs_never_feed_the_readme(tmp_path):
    "A language subset or a limit slice gets its own folder and scope, and the README table (collect_summaries) skips it."
    from hybrid_xir.reports import run_eval, collect_summaries, is_full_eval
    ev = run_eval(model='pretrained', dataset='mlqa-r', langs='en,de', limit=6, out_dir=tmp_path/'eval', progress=False)
    assert ev.out_dir == tmp_path/'eval'/'pretrained'/'mlqa-r-langs-en+de-limit6'
    m = json.loads((ev.out_dir/'metrics.json').read_text())
    assert m['scope'] == dict(langs=['en', 'de'], limit=6, k_ap=None, full=False) and not is_full_eval(m)
    assert len(collect_summaries(tmp_path/'eval')) == 0
    # even if renamed to look like a full run, its recorded scope keeps it out
    (ev.out_dir).rename(tmp_path/'eval'/'pretrained'/'mlqa-r')
    assert len(collect_summaries(tmp_path/'eval')) == 0

def test_default_output_is_outside_the_repository(monkeypatch):
    from hybrid_xir.core import output_dir
    from hybrid_xir.params import EvalParams, TrainParams, AugmentParams, RetrievalParams
    from hybrid_xir.train import train_report_dir
    monkeypatch.delenv('HYBRID_XIR_OUT', raising=False)
    for cls in (EvalParams, TrainParams, AugmentParams, RetrievalParams):      # the notebooks, CLI and run_* share these
        assert cls().out_dir is None, cls.__name__
    assert ROOT not in output_dir('eval').parents and ROOT not in train_report_dir('hybrid', dataset='xquad-r').parents

def test_parameters_cells_are_generated_from_the_dataclasses():
    "Each experiment notebook's parameters cell is exactly `parameters_cell(<its dataclass>)`, and papermill reads the same defaults."
    import papermill as pm
    from dataclasses import fields
    from hybrid_xir.params import EvalParams, TrainParams, AugmentParams, RetrievalParams, ReportsParams, parameters_cell
    for nb, cls in [('eval', EvalParams), ('train', TrainParams), ('augment', AugmentParams), ('eval_retrieval', RetrievalParams),
                    ('reports', ReportsParams)]:
        cells = json.loads((ROOT/'nbs'/f'{nb}.ipynb').read_text())['cells']
        tagged = [''.join(c['source']) for c in cells if 'parameters' in c.get('metadata', {}).get('tags', [])]
        assert tagged == [parameters_cell(cls)], f'{nb}.ipynb: regenerate its parameters cell from {cls.__name__}'
        inferred = pm.inspect_notebook(str(ROOT/'nbs'/f'{nb}.ipynb'))
        assert {k: eval(v['default']) for k, v in inferred.items()} == {f.name: f.default for f in fields(cls)}

def test_cli_options_are_generated_from_the_dataclasses():
    "Every field of an entry point's dataclass is an option of its subcommand, with the field's default."
    from dataclasses import fields
    from hybrid_xir.cli import _parser
    from hybrid_xir.params import EvalParams, TrainParams, AugmentParams, RetrievalParams, ReportsParams
    for cmd, cls in [('eval', EvalParams), ('train', TrainParams), ('augment', AugmentParams), ('retrieval', RetrievalParams),
                     ('reports', ReportsParams)]:
        a = _parser().parse_args([cmd])
        assert cls.from_namespace(a) == cls(), cmd
        assert {f.name for f in fields(cls)} <= set(vars(a)), cmd

@pytest.mark.slow
def test_library_notebooks_execute():
    "Every library notebook runs top to bottom (its examples and asserts); experiment notebooks (front matter `skip_exec: true`) are run above."
    r = subprocess.run(['nbdev-test'], cwd=ROOT,
                       capture_output=True, text=True, env=dict(os.environ))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]

def test_readme_results_match_reports():
    "The README's headline block is what `headline_block` makes of reports/ now, and the README stays short."
    from hybrid_xir.reports import headline_block, README_START, README_END
    s = (ROOT/'README.md').read_text()
    block = s[s.index(README_START):s.index(README_END)].split('\n', 1)[1]
    assert block == headline_block(ROOT/'reports'/'eval'), 'README results are stale: run `hybrid-xir readme`'
    assert len(s) <= 8000, f'README is {len(s)} characters; move detail to the site (docs/)'

def test_readme_opens_with_two_commands():
    s = (ROOT/'README.md').read_text()
    first = s.split('```bash\n', 1)[1].split('```', 1)[0]
    cmds = [l for l in first.splitlines() if l.strip() and not l.startswith('#')]
    assert len(cmds) == 2 and 'hybrid-xir eval' in cmds[0] and 'pytest' in cmds[1]
    ci = (ROOT/'.ci'/'run').read_text()
    assert 'python3 -m pytest' in ci and 'torch==2.13.0' in ci

def test_every_cli_option_has_help():
    "Every option of every subcommand says what it does (the generated ones also show their default)."
    from hybrid_xir.cli import _parser
    p = _parser()
    sub = next(a for a in p._actions if a.__class__.__name__ == '_SubParsersAction')
    missing = [f'{name} {a.option_strings or a.dest}' for name, sp in sub.choices.items() for a in sp._actions
               if a.help is None and a.dest != 'help']
    assert not missing, missing

def test_shipped_notebooks_and_grids_are_the_sources():
    "The package's copies of the experiment notebooks and grid files (`make assets`) are identical to nbs/ and reports/."
    from hybrid_xir.cli import ASSETS
    pairs = [(p, ROOT/'nbs'/p.name) for p in (ASSETS/'notebooks').glob('*.ipynb')] + [(p, ROOT/'reports'/p.name) for p in (ASSETS/'grids').glob('*.toml')]
    assert len(pairs) == 9 and all(a.read_bytes() == b.read_bytes() for a, b in pairs), 'run `make assets`'
    assert {p.name for p in (ROOT/'nbs').glob('*.ipynb') if not p.name[0].isdigit()} == {a.name for a, _ in pairs if a.suffix == '.ipynb'}

@pytest.mark.slow
@needs_data
@pytest.mark.timeout(900)
def test_installed_wheel_runs_its_shipped_eval_notebook(tmp_path):
    """Outside the repository, a wheel installed in a fresh virtual environment writes its notebooks
    (`hybrid-xir notebooks`) and papermill runs the shipped eval notebook with them."""
    import shutil, venv
    src, wheels = tmp_path/'src', tmp_path/'wheels'           # built from a copy: the build leaves nothing in the clone
    for f in ('pyproject.toml', 'README.md', 'LICENSE'): (src/f).parent.mkdir(exist_ok=True); shutil.copy(ROOT/f, src/f)
    shutil.copytree(ROOT/'hybrid_xir', src/'hybrid_xir', ignore=shutil.ignore_patterns('__pycache__'))
    r = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', str(wheels), str(src)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    (whl,) = wheels.glob('hybrid_xir-*.whl')
    env_dir = tmp_path/'venv'
    venv.create(env_dir, system_site_packages=True, with_pip=True)
    py, bin_ = env_dir/'bin'/'python', env_dir/'bin'
    work = tmp_path/'work'; work.mkdir()
    env = dict(os.environ, HYBRID_XIR_OUT=str(tmp_path/'out'), PATH=f"{bin_}:{os.environ['PATH']}")
    run = lambda *cmd: subprocess.run(list(map(str, cmd)), capture_output=True, text=True, cwd=work, env=env, timeout=600)
    for cmd in [(py, '-m', 'pip', 'install', '-q', '--no-deps', whl), (py, '-m', 'ipykernel', 'install', '--prefix', env_dir, '--name', 'hxwheel')]:
        r = run(*cmd); assert r.returncode == 0, r.stderr[-2000:]
    r = run(py, '-c', 'import hybrid_xir; print(hybrid_xir.__file__)')
    assert str(env_dir) in r.stdout, r.stdout + r.stderr          # the wheel's copy, not the checkout's
    r = run(bin_/'hybrid-xir', 'notebooks', 'nbs'); assert r.returncode == 0, r.stderr[-2000:]
    r = run(py, '-m', 'papermill', 'nbs/eval.ipynb', 'out.ipynb', '-k', 'hxwheel', '-p', 'model', 'pretrained', '-p', 'langs', 'en',
            '-p', 'limit', '3', '--log-level', 'WARNING')
    assert r.returncode == 0, r.stderr[-3000:]
    assert (work/'out.ipynb').exists() and list((tmp_path/'out').rglob('metrics.json'))
