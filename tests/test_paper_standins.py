"""The paper recipe against fixtures written from the sources' cards (tests/hub_layouts.py, not from the package's own
table): the preflight passes on them and names each planted fault on its own line; the sampler's own log shows the
paper's language-uniform batches with Table 9 dataset shares, one step budget for every mode and hard negatives on the
translated items; a translator that returns its input is caught; the NLLB stand-in, through `generate()`, translates and
back-translates every training language (and a wrong target code shows); training on the fixtures' learnable task takes
the validation loss below chance. Run alone: `python3 -m pytest tests/test_paper_standins.py -n 0`."""
import json, math, shutil
from pathlib import Path
import numpy as np, pandas as pd
import pytest
from conftest import ROOT
import hub_layouts as hl

PAPER_GRID = ROOT/'reports'/'grid_paper.toml'
OV = 'retrieval.datasets=["miracl:sw"]'

@pytest.fixture
def mirror(tmp_path, monkeypatch):
    from hybrid_xir.core import HUB_MIRROR_ENV
    m = hl.write_all(tmp_path/'hub'); hl.write_miracl(m)
    monkeypatch.setenv(HUB_MIRROR_ENV, str(m))
    return m

def _broken(ov=OV):
    from hybrid_xir.preflight import preflight
    return preflight(PAPER_GRID, ov)['broken']

def test_preflight_passes_on_card_layouts(mirror):
    from hybrid_xir.preflight import preflight, preflight_report
    res = preflight(PAPER_GRID, OV)
    assert res['broken'].empty, res['broken'].to_dict('records')
    s = res['sources']
    assert {'mmarco', 'wikiqa', 'duorc', 'newsqa', 'nq', 'yahoo_qa', 'mrtydi', 'mfaq', 'squadshifts', 'miracl', 'miracl-corpus'} <= set(s.source)
    assert s.checked_against.str.startswith('https://huggingface.co/').all()          # every source names the page it was checked on
    plan = res['plan'][res['plan'].steps.notna()]
    assert plan.steps.nunique() == 1 and set(plan.model) == {'xx', 'xy', 'hybrid', 'hybrid_bt'}   # one step budget for every mode
    e = res['estimate']
    assert {'training', 'evaluation MIRACL', 'translate-train (NLLB)', 'back-translation (NLLB)'} <= set(e.term) and (e.hours > 0).all()
    assert 'GPU-hours' in preflight_report(res)

@pytest.mark.parametrize('fault, line', [
    ('config', r"nq \(sentence-transformers/natural-questions pair/train\).*no pair/train"),
    ('old column', r"newsqa .*missing column\(s\) key"),
    ('string labels', r"wikiqa .*label must hold integers"),
    ('nested answers', r"squadshifts .*answers must be a struct"),
    ('unknown model', r"xlm-roberta-bse .*unknown model"),
])
def test_preflight_names_each_planted_fault_before_training(mirror, tmp_path, fault, line):
    import re
    from hybrid_xir.preflight import PreflightError, check_grid_sources
    from hybrid_xir.aggregate import run_reports
    ov = OV
    if fault == 'config':           # the split under another config name than the card's
        (mirror/'sentence-transformers'/'natural-questions'/'pair').rename(mirror/'sentence-transformers'/'natural-questions'/'default')
    elif fault == 'old column':
        hl.write_source(mirror, 'newsqa', [{('id' if k == 'key' else k): v for k, v in r.items()} for r in hl.LAYOUTS['newsqa'][2](8)])
    elif fault == 'string labels':
        hl.write_source(mirror, 'wikiqa', [r | dict(label=str(r['label'])) for r in hl.LAYOUTS['wikiqa'][2](8)])
    elif fault == 'nested answers':
        hl.write_source(mirror, 'squadshifts', [r | dict(answers=[dict(text=t, answer_start=s) for t, s in zip(r['answers']['text'], r['answers']['answer_start'])])
                                                 for r in hl.LAYOUTS['squadshifts'][2](8)])
    else: ov += ',main.models=["xlm-roberta-bse","hybrid"]'
    b = _broken(ov)
    assert len(b) == 1, b.to_dict('records')
    with pytest.raises(PreflightError) as e: check_grid_sources(__import__('hybrid_xir.grid', fromlist=['load_grid']).load_grid(PAPER_GRID, ov))
    assert re.search(line, str(e.value)), str(e.value)
    # the grid runner stops there, before any cell
    with pytest.raises(PreflightError): run_reports(grid=str(PAPER_GRID), override=ov, root=str(tmp_path/'runs'), tables=str(tmp_path/'t'), figures=str(tmp_path/'f'))
    assert not (tmp_path/'runs').exists()

def test_gated_repository_without_token_is_one_line(monkeypatch):
    import huggingface_hub
    # huggingface_hub raises GatedRepoError (an HTTP 401/403) for a gated repository without an accepted token; its
    # constructor wants a live HTTP response, so the test raises an exception of that name
    GatedRepoError = type('GatedRepoError', (Exception,), {})
    from hybrid_xir.core import HUB_MIRROR_ENV
    from hybrid_xir.preflight import check_miracl
    monkeypatch.delenv(HUB_MIRROR_ENV, raising=False)
    def gated(*a, **k): raise GatedRepoError('401 Client Error: access to dataset miracl/miracl is restricted')
    monkeypatch.setattr(huggingface_hub.HfApi, 'get_paths_info', gated)
    rows = check_miracl(['sw'])
    assert rows[0]['status'] == 'ERROR' and 'is gated' in rows[0]['detail'] and 'HF_TOKEN' in rows[0]['detail']
    assert '\n' not in rows[0]['detail']

class TagTranslator:
    "A stand-in translator that really changes the text: the target language's tag, then the words reversed."
    name = 'tag'; ident = 'test:tag'
    def supports(self, s, t): return s != t
    def translate(self, texts, s, t, decoding=None): return [[f"[{t}] " + ' '.join(reversed(x.split()))] for x in texts]

class IdentityTranslator(TagTranslator):
    "A planted fault: returns its input."
    ident = 'test:identity'
    def translate(self, texts, s, t, decoding=None): return [[x] for x in texts]

class EmptyTranslator(TagTranslator):
    "A planted fault: returns nothing."
    ident = 'test:empty'
    def translate(self, texts, s, t, decoding=None): return [[''] for x in texts]

class ConstantTranslator(TagTranslator):
    "A planted fault: the same sentence for every input."
    ident = 'test:constant'
    def translate(self, texts, s, t, decoding=None): return [[f'[{t}] the same sentence every time'] for x in texts]

QA_LANGS = ('en', 'ar', 'zh', 'de', 'es', 'ru', 'th', 'tr', 'hi')

def _translations_ok(items, langs=QA_LANGS):
    "Every translated copy differs from its source, is non-empty, and the copies are varied; every target language has some."
    tt = items[items.origin.str.startswith('tt:')]
    src = items[items.origin == 'original'].set_index(['dataset', 'group'])['query']
    assert len(tt), 'no translation survived (empty or degenerate outputs)'
    same = [q == src.get((d, g)) for d, g, q in zip(tt.dataset, tt.group, tt['query'])]
    assert not any(same), f'{sum(same)} of {len(tt)} translations equal their source'
    assert (tt['query'].str.strip() != '').all()
    rate = tt.groupby(['dataset', 'lang'])['query'].agg(lambda x: x.nunique() / len(x))
    assert (rate > 0.9).all(), f'translations are nearly constant: {rate.min():.2f} distinct'
    assert set(tt.lang) == set(langs) - {'en'}

def _paper_items(translator, tmp_path):
    from hybrid_xir.train_data import mmarco_items, hub_qa_items
    from hybrid_xir.augment import translate_train, TranslationCache
    qa = pd.concat([hub_qa_items(s) for s in ('wikiqa', 'duorc', 'newsqa', 'nq', 'yahoo_qa')], ignore_index=True)
    qa, rep = translate_train(qa, {('en', l): translator for l in QA_LANGS if l != 'en'}, cache=TranslationCache(tmp_path/'tt.sqlite'), progress=False)
    items = pd.concat([mmarco_items(tuple(hl.MMARCO[1]), n_queries=None), qa, hub_qa_items('mrtydi'), hub_qa_items('mfaq')], ignore_index=True)
    items['origin'] = items['origin'].fillna('original')
    return items, rep

@pytest.mark.parametrize('translator, why', [(IdentityTranslator(), 'equal their source'), (EmptyTranslator(), 'no translation survived'),
                                             (ConstantTranslator(), 'nearly constant')])
def test_broken_translators_are_caught(mirror, tmp_path, translator, why):
    "Planted faults: a translator that returns its input, an empty string or a constant fails the translation check."
    items, _ = _paper_items(translator, tmp_path)
    with pytest.raises(AssertionError, match=why): _translations_ok(items)
    _translations_ok(_paper_items(TagTranslator(), tmp_path/'ok')[0])       # and a translator that works passes it

def test_paper_sampling_from_the_samplers_log(mirror, tmp_path):
    from hybrid_xir.registry import get_config
    from hybrid_xir.sampler import pair_table, HybridBatchSampler
    from hybrid_xir.training_set import dataset_sizes
    from hybrid_xir.train import sampling_summary
    items, rep = _paper_items(TagTranslator(), tmp_path)
    _translations_ok(items)
    # translated copies keep a hard negative: their source's, translated
    tt = items[items.origin.str.startswith('tt:')]
    src_has = items[items.origin == 'original'].set_index(['dataset', 'group'])['negatives'].map(len) > 0
    assert all((len(n) > 0) == bool(src_has[(d, g)]) for d, g, n in zip(tt.dataset, tt.group, tt.negatives))
    assert (rep.with_hard_negative > 0).all()
    # mMARCO weighed by its triples (3 per query in the fixture), Table 9 sizes on request
    assert dataset_sizes(get_config('hybrid', train_data='paper'), items)['mmarco'] == 3 * 40
    sizes = dataset_sizes(get_config('hybrid', train_data='paper', dataset_sizes='table9'), items)
    assert sizes == {'wikiqa': 1469, 'mrtydi': 3547, 'duorc': 33298, 'newsqa': 59496, 'nq': 113535, 'yahoo_qa': 135557,
                     'mfaq': 3567659, 'mmarco': 39780811}       # reports/paper/table9_training_data.csv
    pt = pair_table(items)
    log = HybridBatchSampler(pt, 4, mode='mono', seed=0, draw='language', sizes=sizes, batches_per_epoch=30_000).log()
    shares = log.lang.value_counts(normalize=True)
    assert set(shares.index) == set(QA_LANGS) and (abs(shares - 1 / 9) < 0.02).all(), shares   # uniform over the 9 languages, ±2 points
    t9 = pd.read_csv(ROOT/'reports'/'paper'/'table9_training_data.csv').set_index('dataset')['size_per_language']
    names = {'WikiQA': 'wikiqa', 'Mr. TyDi': 'mrtydi', 'DuoRC': 'duorc', 'NewsQA': 'newsqa', 'Google NQ': 'nq', 'Yahoo QA': 'yahoo_qa',
             'MFAQ': 'mfaq', 'mMARCO': 'mmarco'}
    t9 = t9.rename(index=names).drop('EntityQuestions')
    for lang, ds in [('th', ['wikiqa', 'duorc', 'newsqa', 'nq', 'yahoo_qa']), ('en', list(names.values())), ('de', ['wikiqa', 'duorc', 'newsqa', 'nq', 'yahoo_qa', 'mmarco'])]:
        got = log[log.lang == lang].dataset.value_counts(normalize=True).reindex(ds, fill_value=0)
        want = t9[ds] / t9[ds].sum()
        assert (abs(got - want) < 0.02).all(), (lang, got.round(3).to_dict(), want.round(3).to_dict())
    # one step budget for X-X-mono, X-Y and hybrid
    steps = {m: HybridBatchSampler(pt, 4, mode=m, draw='language', sizes=sizes).batches_per_epoch for m in ('mono', 'cross', 'hybrid')}
    assert len(set(steps.values())) == 1 and steps['mono'] == items.drop_duplicates(['dataset', 'group']).shape[0] // 4
    # the training run's own summary: every pair whose passage item has a hard negative is counted; X-Y batches take one query language
    cfg = get_config('hybrid', train_data='paper', draw='language', dataset_sizes='table9', batch_size=4)
    summ, slog = sampling_summary(pt, items, cfg, sizes)
    has = np.array([len(n) > 0 for n in items.negatives])[pt.p.to_numpy()]
    assert summ['pairs_with_hard_negative'] == int(has.sum()) > 0.6 * summ['pairs']
    assert 'mixed' not in set(slog.lang) and summ['steps_per_epoch'] == steps['hybrid']

def test_no_evaluation_question_overlaps_training(mirror, tmp_path):
    "An XQuAD-R question planted in a training source is dropped before training."
    from conftest import needs_data
    import os
    if not os.environ.get('HYBRID_XIR_DATA'): pytest.skip('needs $HYBRID_XIR_DATA')
    from hybrid_xir.data import load_lareqa
    from hybrid_xir.train_data import hub_qa_items, drop_overlap
    ev = load_lareqa('xquad-r')
    planted = ev.questions[ev.questions.lang == 'en']['text'].iloc[0]
    rows = hl.LAYOUTS['nq'][2](6); rows[0]['query'] = planted
    hl.write_source(mirror, 'nq', rows)
    items = hub_qa_items('nq')
    assert planted in set(items['query']) and planted not in set(drop_overlap(items, ev)['query'])

NLLB = 'facebook/nllb-200-distilled-600M'

def _nllb_standin_items(mirror, langs):
    "The paper recipe's training items with hybrid_bt's back-translation, NLLB (the stand-in) for both translations."
    from hybrid_xir.standins import make_nllb_standin
    from hybrid_xir.registry import get_config
    from hybrid_xir.training_set import config_items
    shutil.rmtree(mirror/NLLB); make_nllb_standin(mirror/NLLB)      # the card-layout mirror holds only its config.json
    cfg = get_config('hybrid_bt', train_data='paper', qa_langs=langs, mmarco_langs=('en', 'de'), source_max_items=6,
                     mmarco_queries=6, translator=NLLB, tt_translator=NLLB)
    items, _, rep = config_items(cfg, progress=False)
    items['origin'] = items['origin'].fillna('original')
    return items, rep

def _nllb_ok(items, rep, langs):
    "Translate-train varied and tagged with the language asked for; every training language back-translated, no copy kept."
    _translations_ok(items, langs)
    tt = items[items.origin.str.startswith('tt:')]
    wrong = [(l, q) for l, q in zip(tt.lang, tt['query']) if not q.startswith(l + ' ')]
    assert not wrong, f'{len(wrong)} of {len(tt)} translations are not in the language asked for, e.g. {wrong[:2]}'
    bt = items[items.origin.str.startswith('bt:')]
    assert set(bt.lang) == set(langs) | {'de'}, sorted(set(bt.lang))     # th: only translate-train items, back-translated too
    r = rep.set_index('lang')
    assert (r.kept > 0).all() and (r.identical == 0).all(), r
    # one paraphrase per distinct source text (the fixtures repeat questions across sources), never the source itself
    src = items[~items.origin.str.startswith('bt:')].drop_duplicates(['dataset', 'group', 'lang']).set_index(['dataset', 'group', 'lang'])['query']
    pairs = pd.DataFrame(dict(lang=bt.lang, source=[src[(d, g, l)] for d, g, l in zip(bt.dataset, bt.group, bt.lang)], para=bt['query'].values))
    assert (pairs.source != pairs.para).all()
    per = pairs.groupby('lang').agg(sources=('source', 'nunique'), paras=('para', 'nunique'))
    assert (per.paras == per.sources).all(), per

@pytest.mark.slow
@pytest.mark.skipif(not __import__('conftest')._has_data(), reason='LAReQA data not found (overlap removal reads it)')
def test_nllb_standin_translates_and_back_translates_every_language(mirror, tmp_path, monkeypatch):
    """translate-train and hybrid_bt's back-translation through HFSeq2SeqTranslator and `generate()` with the NLLB
    stand-in (its output: the target language's tag, then a cipher of the input), as a GPU user runs NLLB-200."""
    monkeypatch.setenv('HYBRID_XIR_CACHE', str(tmp_path/'cache'))
    langs = ('en', 'de', 'th')
    _nllb_ok(*_nllb_standin_items(mirror, langs), langs)

@pytest.mark.slow
@pytest.mark.skipif(not __import__('conftest')._has_data(), reason='LAReQA data not found (overlap removal reads it)')
def test_a_wrong_target_language_code_is_caught(mirror, tmp_path, monkeypatch):
    "A planted fault: every direction decodes into English (a wrong forced_bos_token_id); the check above fails."
    import hybrid_xir.augment as aug
    monkeypatch.setenv('HYBRID_XIR_CACHE', str(tmp_path/'cache'))
    real = aug.lang_code
    monkeypatch.setattr(aug, 'lang_code', lambda family, lang: real(family, 'en'))
    langs = ('en', 'de', 'th')
    with pytest.raises(AssertionError, match='not in the language asked for'): _nllb_ok(*_nllb_standin_items(mirror, langs), langs)

@pytest.mark.slow
@pytest.mark.parametrize('lr, learns, store', [(1e-3, True, 'items'), (1e-9, False, 'items'), (1e-3, True, 'store')])   # lr 1e-9: a planted fault
def test_training_on_the_learnable_standin_task_goes_below_chance(mirror, tmp_path, monkeypatch, lr, learns, store):
    """The recipe's trainer (XLM-R stand-in, language-uniform hybrid batches, SQuADShifts early stopping) on the card
    fixtures, where a question and its passage share the entity's number: the validation loss falls from the untrained
    model's to well below chance, ln(2 x batch) with one hard negative per pair."""
    from hybrid_xir.standins import make_xlmr_standin
    from hybrid_xir.registry import get_config
    from hybrid_xir.training_set import base_items
    from hybrid_xir.train import build_trainer
    shutil.rmtree(mirror/'xlm-roberta-base'); make_xlmr_standin(mirror/'xlm-roberta-base')
    cfg = get_config('hybrid', train_data='paper', base_model='xlm-roberta-base', qa_langs=('en',), mmarco_langs=('en', 'de'),
                     batch_size=8, lr=lr, max_steps=60, eval_steps=20, val_batches=4, bf16=False, max_seq_length=32,
                     draw='language', dataset_sizes='data', warmup_ratio=0.0, validation='squadshifts', data_store=store)
    monkeypatch.setenv('HYBRID_XIR_CACHE', str(tmp_path/'cache'))
    items = base_items(cfg, progress=False)[0]
    assert ('mmarco' in set(items.dataset)) == (store == 'items')      # the store reads all of mMARCO itself, never as items
    tr = build_trainer(cfg, items, tmp_path/'ck')
    if store == 'store':        # all of mMARCO's triples (3 per query) and the QA sets, from the stores
        assert tr.sampling[0]['data_store'] == 'store' and tr.sampling[0]['groups']['mmarco'] == 40 and len(tr.train_dataset) == 60 * 8
        assert (tmp_path/'ck'/'store_batches.arrow').exists() and tr.sampling[0]['sizes']['mmarco'] == 120
    before = tr.evaluate()['eval_loss']
    tr.train()
    evals = [h['eval_loss'] for h in tr.state.log_history if 'eval_loss' in h and h['step'] > 0]
    chance = math.log(2 * cfg.batch_size)
    assert len(evals) == 3 and (evals[-1] < min(before, chance) / 2) == learns, (before, evals)
