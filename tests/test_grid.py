"""The experiment grid: grid file checks, a tiny grid run end to end through papermill, resume, reproducibility, and
the significance test against an independent implementation."""
import json, shutil
from pathlib import Path
import numpy as np, pandas as pd
import pytest
from conftest import ROOT, needs_data

def test_grid_file_errors(tmp_path):
    from hybrid_xir.grid import load_grid
    from hybrid_xir.core import DataError
    for text, msg in [('[main]\nmodel = ["xx"]\n', 'unknown key'), ('[sweep]\n', 'unknown section'),
                      ('[alpha_sweep]\nalphas = [2.0]\n', 'alpha must lie'), ('[main\n', 'not valid TOML'),
                      ('[main]\nmodels = ["xx"]\nseeds = ["a"]\n', 'seeds must be integers')]:
        (tmp_path/'g.toml').write_text(text)
        with pytest.raises(DataError, match=msg): load_grid(tmp_path/'g.toml')
    with pytest.raises(DataError, match='not found'): load_grid(tmp_path/'missing.toml')

def test_project_grid_cells():
    "The committed grid: every model × dataset × seed once, pretrained once per dataset, α = 0.5 shared with hybrid."
    from hybrid_xir.grid import load_grid, grid_cells
    cells = grid_cells(load_grid(ROOT/'reports'/'grid.toml'))
    ids = [(c.kind, c.id) for c in cells]
    assert len(ids) == len(set(ids))
    lareqa = [c for c in cells if c.kind == 'lareqa']
    assert len([c for c in lareqa if c.model == 'pretrained']) == 2
    assert len([c for c in lareqa if 'main' in c.experiments]) == 2 * (1 + 4 * 3)
    assert len([c for c in lareqa if 'alpha_sweep' in c.experiments]) == 2 * 5
    assert {c.variant() for c in lareqa if c.alpha == 0.25} == {'hybrid@alpha=0.25'}

def test_randomization_test_matches_t_test():
    "With many queries the sign-flip randomisation test and the paired t-test (scipy) agree on the p-value."
    from scipy import stats
    from hybrid_xir.aggregate import randomization_test
    rng = np.random.default_rng(0)
    for shift in (0.0, 0.08, 0.15):
        d = rng.normal(shift, 1.0, 800)
        stat, p = randomization_test(d / len(d), n_perm=20_000, seed=1)
        assert np.isclose(stat, d.mean())
        p_t = stats.ttest_1samp(d, 0.0).pvalue
        assert abs(p - p_t) < 0.02, (shift, p, p_t)

def test_macro_weights_reproduce_evaluator_summary():
    "Per-query AP with the macro weights gives the evaluator's macro mAP (committed pretrained XQuAD-R run)."
    from hybrid_xir.aggregate import macro_weights
    d = ROOT/'reports'/'eval'/'pretrained'/'xquad-r'
    if not (d/'per_query.parquet').exists(): pytest.skip('no committed evaluation')
    pq, summ = pd.read_parquet(d/'per_query.parquet'), json.loads((d/'metrics.json').read_text())['summary']
    for s in ('mono', 'cross', 'multi'):
        x = pq[pq.setting == s]
        assert np.isclose((macro_weights(x) * x.ap).sum(), summ[f'{s} mAP'], atol=1e-9)
    m = pq[pq.setting == 'multi']
    assert np.isclose((macro_weights(m) * m.rank_dist).sum(), summ['rank dist'], atol=1e-6)

@pytest.mark.slow
@needs_data
@pytest.mark.timeout(1500)
def test_tiny_grid_runs_resumes_and_reproduces(tmp_path):
    """A tiny grid (tiny encoder, 2 training steps, 4 questions) runs through the papermill notebooks; finished cells
    are skipped; re-running it from scratch with the same seeds, concurrently on two Dask workers, reproduces every
    table of the sequential run within 1e-6."""
    from hybrid_xir.train import make_tiny_encoder
    from hybrid_xir.registry import run_dir
    from hybrid_xir.grid import run_grid, load_grid, grid_cells
    from hybrid_xir.aggregate import write_reports
    tiny = make_tiny_encoder(tmp_path/'tiny')
    gf = tmp_path/'grid.toml'
    gf.write_text(f'''
[defaults]
datasets = ["xquad-r"]
seeds = [1, 2]
train = {{ base_model = "{tiny}", max_steps = 2, batch_size = 4, max_seq_length = 24, eval_steps = 2, qa_sets = "" }}
eval = {{ limit = 4, max_seq_length = 32 }}
[main]
models = ["pretrained", "hybrid"]
[alpha_sweep]
alphas = [0.0, 0.5]
seeds = [1]
''')
    grid = load_grid(gf)
    trained = [c for c in grid_cells(grid) if c.trained]
    def clear_models():
        for c in trained: shutil.rmtree(run_dir(c.variant(grid['train']), c.dataset), ignore_errors=True)
    tables = []
    try:
        for attempt in ('a', 'b'):
            clear_models()
            root = tmp_path/f'runs_{attempt}'
            # the first run goes cell by cell, the second on a local two-worker Dask cluster: the tables must not differ
            ran, skipped = run_grid(gf, root, cwd=ROOT, nbs=ROOT/'nbs', progress=False, workers=2 if attempt == 'b' else None)
            assert len(ran) == 4 and not skipped and ran == [c.id for c in grid_cells(grid)]
            assert (root/'xquad-r'/'hybrid-s1'/'train.ipynb').exists() and (root/'xquad-r'/'hybrid-a0-s1'/'eval.ipynb').exists()
            assert list((root/'xquad-r'/'hybrid-s2'/'eval').rglob('run.multi.trec'))
            out = write_reports(gf, root, tmp_path/f'tables_{attempt}', tmp_path/f'figures_{attempt}', n_perm=500)
            tables.append(out)
            assert out['progress']['full_scope'] is False       # the grid's own `eval = { limit = 4 }`: a smoke grid
            if attempt == 'a':    # finished cells are skipped; a cell whose record is gone runs again
                assert run_grid(gf, root, dry_run=True) == ([], [c.id for c in grid_cells(grid)])
                (root/'xquad-r'/'pretrained'/'done.json').unlink()
                assert run_grid(gf, root, dry_run=True)[0] == ['lareqa:xquad-r/pretrained']
                run_grid(gf, root, only=['main'], cwd=ROOT, nbs=ROOT/'nbs', progress=False)
    finally:
        clear_models()
    a, b = tables
    la, lb = a['main_long'], b['main_long']
    assert len(la) == 2 * 7 and (la[['dataset', 'model', 'metric']] == lb[['dataset', 'model', 'metric']]).all().all()
    np.testing.assert_allclose(la['mean'], lb['mean'], atol=1e-6); np.testing.assert_allclose(la['std'], lb['std'], atol=1e-6)
    for k in a['per_language']: np.testing.assert_allclose(a['per_language'][k].to_numpy(), b['per_language'][k].to_numpy(), atol=1e-6)
    np.testing.assert_allclose(a['significance'][['diff', 'p']].to_numpy(), b['significance'][['diff', 'p']].to_numpy(), atol=1e-6)
    assert la[(la.model == 'hybrid')].n.eq(2).all()
    assert set(a['claims'].verdict) <= {'supported', 'not supported', 'not testable'}
    assert (tmp_path/'figures_a'/'alpha_sweep.png').exists() and (tmp_path/'tables_a'/'claims.md').exists()


def test_partial_grid_is_reported_as_provisional(tmp_path):
    "A grid with unfinished cells says so in its progress record and in the README block, naming the cells not yet run."
    from hybrid_xir.aggregate import synthetic_runs, write_reports
    from hybrid_xir.reports import results_block, headline_block
    gf = synthetic_runs(tmp_path/'runs', '[defaults]\ndatasets = ["xquad-r"]\nseeds = [1, 2]\n[main]\nmodels = ["pretrained", "hybrid"]\n')
    (tmp_path/'runs'/'xquad-r'/'hybrid-s2'/'done.json').unlink()
    out = write_reports(gf, tmp_path/'runs', tmp_path/'tables', tmp_path/'figures', n_perm=200)
    assert out['progress'] == dict(finished=2, total=3, missing=['xquad-r/hybrid-s2'], partial=[], stale=[], full_scope=True)
    (tmp_path/'eval').mkdir()
    block = results_block(tmp_path/'eval')
    assert '2 of 3 cells have finished' in block and 'xquad-r/hybrid-s2' in block and 'provisional' in block
    assert '**Provisional:** 1 of 3 cells have not run yet' in headline_block(tmp_path/'eval')     # the README's headline
    (tmp_path/'runs'/'xquad-r'/'hybrid-s2'/'done.json').write_text('{}')   # a stale record counts as not finished
    assert write_reports(gf, tmp_path/'runs', tmp_path/'tables', tmp_path/'figures', n_perm=200)['progress']['finished'] == 2


def _edit_metrics(root, cell, **kw):
    import json
    from pathlib import Path
    d = json.loads((Path(root)/cell/'done.json').read_text())
    p = Path(root)/cell/d['metrics']; m = json.loads(p.read_text())
    for k, v in kw.items():
        if v is None: m.pop(k, None)
        else: m[k] = v
    p.write_text(json.dumps(m))

def test_subset_and_stale_cells(tmp_path):
    """A cell evaluated on a subset (languages, limit) or with mAP@k never feeds the tables; a cell evaluated by an
    older evaluator is kept but marked, and the grid re-runs it."""
    from hybrid_xir.aggregate import synthetic_runs, write_reports, collect_runs
    from hybrid_xir.grid import run_grid
    from hybrid_xir.reports import results_block, headline_block
    gf = synthetic_runs(tmp_path/'runs', '[defaults]\ndatasets = ["xquad-r"]\nseeds = [1, 2]\n[main]\nmodels = ["pretrained", "hybrid"]\n')
    _edit_metrics(tmp_path/'runs', 'xquad-r/hybrid-s1', scope=dict(langs=['en'], limit=None, k_ap=None, full=False))
    _edit_metrics(tmp_path/'runs', 'xquad-r/hybrid-s2', evaluator=None, scope=None)      # written by evaluator 1
    runs = collect_runs(gf, tmp_path/'runs')
    assert set(runs.id) == {'xquad-r/pretrained', 'xquad-r/hybrid-s2'}
    assert runs.attrs['partial'] == ['xquad-r/hybrid-s1'] and runs.attrs['stale'] == ['xquad-r/hybrid-s2']
    out = write_reports(gf, tmp_path/'runs', tmp_path/'tables', tmp_path/'figures', n_perm=200)
    assert out['progress']['stale'] == ['xquad-r/hybrid-s2'] and out['progress']['partial'] == ['xquad-r/hybrid-s1']
    (tmp_path/'eval').mkdir()
    assert 'await re-evaluation since the tie fix' in results_block(tmp_path/'eval')
    assert "1 of 2 finished cells still hold the earlier evaluator's numbers" in headline_block(tmp_path/'eval')
    todo, _ = run_grid(gf, tmp_path/'runs', dry_run=True, progress=False)
    assert todo == ['lareqa:xquad-r/hybrid-s2']      # the stale cell is re-run (the partial one is finished: its params match)

def test_smoke_grid_tables_are_never_published(tmp_path):
    "Tables of a grid that declares a partial evaluation (eval = { limit = ... }) are refused by the README block."
    import json, pytest
    from hybrid_xir.core import HybridXirError
    from hybrid_xir.aggregate import synthetic_runs, write_reports
    from hybrid_xir.reports import results_block, headline_block
    gf = synthetic_runs(tmp_path/'runs', '[defaults]\ndatasets = ["xquad-r"]\nseeds = [1]\neval = { limit = 4 }\n[main]\nmodels = ["pretrained", "hybrid"]\n')
    out = write_reports(gf, tmp_path/'runs', tmp_path/'tables', tmp_path/'figures', n_perm=100)
    assert out['progress']['full_scope'] is False and len(out['runs']) == 2
    (tmp_path/'eval').mkdir()
    for block in (results_block, headline_block):
        with pytest.raises(HybridXirError, match='never published in the README'): block(tmp_path/'eval')


def test_a_model_is_never_trained_twice_at_once(tmp_path, monkeypatch):
    """Two grid workers reaching the same untrained model (the paper's data trains one model for both evaluation sets):
    the second waits on the training lock, then reuses the model instead of training it again."""
    import threading, time
    from hybrid_xir.core import file_lock
    from hybrid_xir.registry import run_dir
    from hybrid_xir.train import ensure_trained, training_lock
    monkeypatch.setenv('HYBRID_XIR_CACHE', str(tmp_path/'cache'))
    d = run_dir('hybrid@train_data=paper', 'xquad-r')
    assert d == run_dir('hybrid@train_data=paper', 'mlqa-r')          # one model for both evaluation sets
    got = {}
    with training_lock(d):                                           # "another worker" is training it
        t = threading.Thread(target=lambda: got.update(path=ensure_trained('hybrid@train_data=paper', 'mlqa-r')))
        t.start(); time.sleep(1.0)
        assert t.is_alive() and not got                              # waiting, not training
        (d/'model').mkdir(parents=True); (d/'model'/'modules.json').write_text('[]')   # the other worker publishes it
    t.join(10)
    assert got['path'] == d/'model'
