"""The paper recipe (reports/grid_paper.toml) end to end on local stand-ins of every hub repository it uses
(hybrid_xir.standins): translate-train, back-translation, training with early stopping on SQuADShifts, XQuAD-R and
MIRACL evaluation, the tables; and one clear error when a hub dataset's schema has changed."""
import json, os, subprocess, sys
from pathlib import Path
import pandas as pd
import pytest
from conftest import ROOT, needs_data

def test_hub_schema_change_is_one_error_naming_dataset_and_column(tmp_path, monkeypatch):
    from hybrid_xir.core import HUB_MIRROR_ENV, DataError
    from hybrid_xir.standins import write_qa_sources
    from hybrid_xir.train_data import hub_qa_items, HUB_QA_SOURCES
    write_qa_sources(tmp_path, n=5)
    monkeypatch.setenv(HUB_MIRROR_ENV, str(tmp_path))
    for name in HUB_QA_SOURCES:         # every source reads its stand-in
        assert len(hub_qa_items(name)) >= 3, name
    f = tmp_path/'castorini'/'mr-tydi'/'mrtydi-v1.1-english'/'train.jsonl.gz'       # a loading-script dataset: its raw file
    import gzip
    rows = [json.loads(l) for l in gzip.open(f, 'rt')]
    with gzip.open(f, 'wt') as g: g.writelines(json.dumps({k: v for k, v in r.items() if k != 'positive_passages'}) + '\n' for r in rows)
    with pytest.raises(DataError, match=r"mrtydi \(castorini/mr-tydi, english/train\): missing column\(s\) positive_passages"):
        hub_qa_items('mrtydi')
    # a training run on the paper's data stops with that error before writing anything
    from hybrid_xir.standins import write_mmarco
    from hybrid_xir.registry import run_dir
    from hybrid_xir.train import run_train, train_report_dir
    write_mmarco(tmp_path, n=4)
    monkeypatch.setenv('HYBRID_XIR_CACHE', str(tmp_path/'cache'))
    kw = dict(model='hybrid@train_data=paper,qa_sources=,en_sources=mrtydi', dataset='xquad-r', out_dir=str(tmp_path/'train'))
    with pytest.raises(DataError, match='missing column'): run_train(**kw)
    assert not run_dir('hybrid@train_data=paper,qa_sources=,en_sources=mrtydi', 'xquad-r').exists() and not train_report_dir(**kw).exists()
    with pytest.raises(DataError, match="'clips/mfaq' is not in the hub mirror"):
        __import__('shutil').rmtree(tmp_path/'clips')
        hub_qa_items('mfaq')

@pytest.mark.slow
@needs_data
@pytest.mark.timeout(900)
def test_paper_grid_runs_end_to_end_on_standins(tmp_path):
    "`hybrid-xir reports --grid reports/grid_paper.toml --hub-mirror <stand-ins> --override <caps>`: every stage runs."
    from hybrid_xir.standins import build_hub_mirror
    mirror = build_hub_mirror(tmp_path/'hub', models=('xlm-roberta-base', 'sentence-transformers/LaBSE', 'facebook/nllb-200-distilled-600M'),
                              miracl_langs=('sw',))
    caps = ('train.base_model="sentence-transformers/LaBSE",train.batch_size=8,train.max_steps=4,train.eval_steps=2,'
            'train.bf16=false,train.source_max_items=8,train.mmarco_queries=16,train.qa_langs=["en","de","th"],'
            'train.max_seq_length=32,train.val_batches=2,eval.limit=4,eval.max_seq_length=32,eval.langs="en,de",main.datasets=["xquad-r","mlqa-r"],'
            'main.seeds=[42],main.models=["xlm-roberta-base","hybrid_bt"],retrieval.models=["hybrid_bt"],retrieval.datasets=["miracl:sw"]')
    out = tmp_path/'out'
    env = os.environ | dict(HYBRID_XIR_CACHE=str(tmp_path/'cache'))
    r = subprocess.run([sys.executable, '-c', 'import sys; from hybrid_xir.cli import main; sys.exit(main(sys.argv[1:]))', 'reports',
                        '--grid', 'reports/grid_paper.toml', '--hub-mirror', str(mirror), '--override', caps, '--root', str(out/'runs'),
                        '--tables', str(out/'tables'), '--figures', str(out/'figures'), '--n-perm', '200'],
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=880)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-5000:])
    runs = out/'runs'
    cells = [f'{d}/{m}' for d in ('xquad-r', 'mlqa-r') for m in ('xlm-roberta-base', 'hybrid_bt-s42')] + ['miracl:sw/hybrid_bt-s42']
    assert all((runs/c/'done.json').exists() for c in cells)
    # the paper's data trains one model for every evaluation set: the MLQA-R cell reused the XQuAD-R cell's model
    assert 'already trained' in (runs/'mlqa-r'/'hybrid_bt-s42'/'train.ipynb').read_text()
    card = json.loads(next((runs/'xquad-r'/'hybrid_bt-s42'/'train').rglob('card.json')).read_text())
    c = card['config']
    assert c['base_model'] == 'sentence-transformers/LaBSE' and c['train_data'] == 'paper' and c['validation'] == 'squadshifts'
    assert {'mmarco', 'wikiqa', 'duorc', 'newsqa', 'nq', 'yahoo_qa', 'mrtydi', 'mfaq'} <= set(card['train_data'])
    assert set(card['train_data']['mmarco']) == {'en', 'ar', 'zh', 'de', 'es', 'ru', 'hi'}
    assert any(o.startswith('tt:en>') for o in card['origins']) and any(o.startswith('bt:') for o in card['origins'])   # translate-train and back-translation
    assert card['best_eval_loss'] is not None          # early stopping watched the SQuADShifts validation loss
    # back-translation reached every training language, th (translate-train only) included, and kept no copy of its source
    bt = pd.read_csv(next((runs/'xquad-r'/'hybrid_bt-s42'/'train').rglob('back_translation.csv')))
    assert set(bt.lang) == {'en', 'ar', 'zh', 'de', 'es', 'ru', 'hi', 'th'} and (bt.kept > 0).all() and (bt.identical == 0).all(), bt
    model = Path(card['model_dir'])
    assert json.loads((model/'config_sentence_transformers.json').read_text())['prompts'] == {'query': 'Query: ', 'passage': 'Passage: '}
    assert json.loads((model/'modules.json').read_text())[2]['path'] == '2_Dense'                   # LaBSE's module stack
    main = pd.read_csv(out/'tables'/'main_long.csv')
    assert set(main.model) == {'xlm-roberta-base', 'hybrid_bt'} and set(main.dataset) == {'xquad-r', 'mlqa-r'} and main['mean'].notna().any()
    assert (out/'tables'/'paper_summary.csv').exists() and (out/'tables'/'claims.csv').exists()   # the paper-comparison tables
    assert json.loads((out/'tables'/'progress.json').read_text())['full_scope'] is False   # capped: never published
    assert list((runs/'miracl:sw'/'hybrid_bt-s42'/'eval').rglob('metrics.json'))

@pytest.mark.slow
def test_gpu_check_script_runs_its_code_path_on_cpu(tmp_path):
    "scripts/gpu_check.py --tiny: the GPU check's training step, evaluation pass and estimates, on a CPU in seconds."
    r = subprocess.run([sys.executable, 'scripts/gpu_check.py', '--tiny', '--out', str(tmp_path)], capture_output=True, text=True,
                       cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path/'gpu_check.json').read_text())
    assert res['tiny'] and res['train']['timed_steps'] == 3 and res['train']['examples_per_s'] > 0 and res['eval']['texts_per_s'] > 0
    # one estimate, the preflight's: the script's FLOPs terms are gpu_hour_estimate's, and the guide quotes their sum
    from hybrid_xir.preflight import preflight_plan, gpu_hour_estimate
    grid = ROOT/'reports'/'grid_paper.toml'
    est = gpu_hour_estimate(grid, preflight_plan(grid, pd.DataFrame(columns=['source', 'status', 'detail', 'size'])))
    f = res['flops_estimate']
    assert f['how'].startswith('estimate') and [t['term'] for t in f['terms']] == list(est.term)
    assert abs(f['gpu_hours_grid'] - est.hours.sum()) < 1e-9 and f['gpu_hours_grid'] > 0
    assert f"({est.hours.sum():.1f})" in (ROOT/'docs'/'guide.md').read_text()
    e = res['estimate']
    assert e['trained_models'] == 12 and e['steps_per_trained_model'] > 0 and set(e['not_measured']) >= {'evaluation MIRACL', 'translate-train (NLLB)'}
