import json, os, urllib.error, urllib.request
from pathlib import Path
import pytest
from conftest import needs_data
from hybrid_xir.core import DataError
from hybrid_xir.data import load_lareqa, fetch_lareqa, find_data_dir, DATASETS

# the fixtures here are hand-made LAReQA files: their 'differs from the pinned upstream file' warning is expected
pytestmark = pytest.mark.filterwarnings('ignore:.*differs from the pinned upstream')

XQ_CANDS = dict(ar=1222, de=1276, el=1234, en=1180, es=1215, hi=1244, ru=1219, th=852, tr=1167, vi=1209, zh=1196)
MLQA = dict(ar=(517, 2545), de=(512, 2362), en=(1148, 6264), es=(500, 1787), hi=(507, 2426), vi=(511, 2828), zh=(504, 2322))

@needs_data
def test_xquad_counts_match_published(xquad):
    st = xquad.stats()
    assert list(st.index) == ['ar', 'de', 'el', 'en', 'es', 'hi', 'ru', 'th', 'tr', 'vi', 'zh']
    assert (st['questions'] == 1190).all()
    assert st['candidates'].to_dict() == XQ_CANDS
    assert (st['answers'] == 1190).all() and st['unanswered'].sum() == 0
    assert len(xquad.questions) == 13090 and len(xquad.candidates) == 13014
    # 11-way parallel: every question id has an answer in all 11 languages
    assert (xquad.answers.groupby('qid').size() == 11).all()

@needs_data
def test_mlqa_counts_match_published(mlqa):
    st = mlqa.stats()
    assert {l: (r.questions, r.candidates) for l, r in st.iterrows()} == MLQA
    n = mlqa.answers.groupby('qid').size()
    assert n.min() >= 2 and n.max() <= 7

@needs_data
def test_relevant_sentence_contains_answer(xquad):
    # the relevant candidate is the sentence whose span holds answer_start: its text contains the answer in most cases
    raw = json.load(open(Path(os.environ['HYBRID_XIR_DATA'])/'lareqa/xquad-r/en.json'))
    answers = {q['id']: q['answers'][0]['text'] for a in raw['data'] for p in a['paragraphs'] for q in p['qas']}
    en = xquad.answers[xquad.answers.lang == 'en']
    hits = sum(answers[q] in xquad.candidates.text.iat[c] for q, c in zip(en.qid, en.cand))
    assert hits / len(en) > 0.97

@needs_data
def test_candidates_are_contiguous_per_language(xquad):
    b = xquad.cand_bounds()
    assert sum(e - s for s, e in b.values()) == len(xquad.candidates)
    for l, (s, e) in b.items(): assert (xquad.candidates.lang.iloc[s:e] == l).all()

@needs_data
def test_subset_keeps_answers_consistent(xquad):
    s = xquad.subset(25)
    assert s.questions.qid.nunique() == 25 and len(s.questions) == 25 * 11
    # every answer row points at the same sentence text as in the full data
    full = xquad.answers.merge(xquad.candidates[['text']], left_on='cand', right_index=True)
    sub = s.answers.merge(s.candidates[['text']], left_on='cand', right_index=True)
    m = sub.merge(full, on=['qid', 'lang'])
    assert (m.text_x == m.text_y).all()

def _write(dirp, lang, obj_or_text, dataset='xquad-r'):
    p = Path(dirp)/'lareqa'/dataset/f'{lang}.json'
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(obj_or_text if isinstance(obj_or_text, str) else json.dumps(obj_or_text))
    return p

GOOD = {'data': [{'title': 't', 'paragraphs': [{'context': 'A b. C d.', 'sentences': ['A b.', 'C d.'],
        'sentence_breaks': [[0, 4], [5, 9]], 'qas': [{'id': 'q1', 'question': 'c?', 'answers': [{'answer_start': 5, 'text': 'C'}]},
                                                    {'id': 'q2', 'question': 'x?', 'answers': [{'answer_start': 99, 'text': 'x'}]}]}]}]}

def test_small_file_and_unanswerable_counted(tmp_path):
    _write(tmp_path, 'en', GOOD)
    with pytest.warns(UserWarning, match="answer_start falls in no sentence.*'en': 1"):
        d = load_lareqa('xquad-r', data_dir=tmp_path, langs=['en'])
    assert len(d.questions) == 2 and len(d.candidates) == 2
    assert d.answers.to_dict('records') == [{'qid': 'q1', 'lang': 'en', 'cand': 1}]
    assert d.unanswered == {'en': 1}

def test_malformed_json(tmp_path):
    _write(tmp_path, 'en', '{"data": [ {')
    with pytest.raises(DataError, match='malformed JSON at line 1'): load_lareqa('xquad-r', data_dir=tmp_path, langs=['en'])

def test_paragraph_without_sentences(tmp_path):
    bad = json.loads(json.dumps(GOOD)); del bad['data'][0]['paragraphs'][0]['sentences']
    _write(tmp_path, 'en', bad)
    with pytest.raises(DataError, match="no 'sentences'/'sentence_breaks'.*paragraph 0|paragraph 0.*no 'sentences'"):
        load_lareqa('xquad-r', data_dir=tmp_path, langs=['en'])

def test_breaks_mismatch(tmp_path):
    bad = json.loads(json.dumps(GOOD)); bad['data'][0]['paragraphs'][0]['sentence_breaks'].pop()
    _write(tmp_path, 'en', bad)
    with pytest.raises(DataError, match='2 sentences but 1 sentence_breaks'): load_lareqa('xquad-r', data_dir=tmp_path, langs=['en'])

def test_language_file_missing(tmp_path):
    _write(tmp_path, 'en', GOOD)
    with pytest.raises(DataError, match=r'language file\(s\) missing.*de\.json'):
        load_lareqa('xquad-r', data_dir=tmp_path, langs=['en', 'de'])

def test_unknown_language_and_dataset():
    with pytest.raises(DataError, match=r"unknown language code\(s\) \['xx'\]"): load_lareqa('xquad-r', langs=['en', 'xx'])
    with pytest.raises(DataError, match='unknown dataset'): load_lareqa('squad')

def test_missing_data_dir_offline(tmp_path, monkeypatch):
    monkeypatch.delenv('HYBRID_XIR_DATA', raising=False)
    monkeypatch.setenv('HYBRID_XIR_CACHE', str(tmp_path/'cache'))
    monkeypatch.setenv('HYBRID_XIR_OFFLINE', '1')
    def no_network(*a, **k): raise AssertionError('offline mode must not touch the network')
    monkeypatch.setattr(urllib.request, 'urlopen', no_network)
    with pytest.raises(DataError) as e: load_lareqa('mlqa-r', data_dir=tmp_path/'nowhere')
    msg = str(e.value)
    assert 'Looked in' in msg and 'nowhere' in msg and 'user cache' in msg and 'HYBRID_XIR_DATA' in msg

def test_missing_data_tries_download_then_one_error(tmp_path, monkeypatch):
    monkeypatch.delenv('HYBRID_XIR_DATA', raising=False)
    monkeypatch.delenv('HYBRID_XIR_OFFLINE', raising=False); monkeypatch.delenv('HF_HUB_OFFLINE', raising=False)
    monkeypatch.setenv('HYBRID_XIR_CACHE', str(tmp_path/'cache'))
    def offline(*a, **k): raise urllib.error.URLError('no network')
    monkeypatch.setattr(urllib.request, 'urlopen', offline)
    with pytest.raises(DataError, match='(?s)Looked in.*automatic download failed too.*could not download'):
        load_lareqa('xquad-r', langs=['en'])
    assert not list((tmp_path/'cache').rglob('*.json'))

def test_fetch_offline_and_checksum(tmp_path, monkeypatch):
    def offline(*a, **k): raise urllib.error.URLError('no network')
    monkeypatch.setattr(urllib.request, 'urlopen', offline)
    with pytest.raises(DataError, match='could not download.*Offline'): fetch_lareqa('xquad-r', tmp_path, langs=['en'])
    class Resp:
        def __enter__(self): return self
        def __exit__(self, *a): pass
        def read(self): return b'{"tampered": true}'
    monkeypatch.setattr(urllib.request, 'urlopen', lambda *a, **k: Resp())
    with pytest.raises(DataError, match='checksum mismatch'): fetch_lareqa('xquad-r', tmp_path, langs=['en'])
    assert not list(tmp_path.rglob('*.json'))   # nothing half-written

@needs_data
def test_fetch_accepts_verified_bytes(tmp_path, monkeypatch):
    src = Path(os.environ['HYBRID_XIR_DATA'])/'lareqa/mlqa-r/de.json'
    class Resp:
        def __enter__(self): return self
        def __exit__(self, *a): pass
        def read(self): return src.read_bytes()
    seen = []
    monkeypatch.setattr(urllib.request, 'urlopen', lambda url, **k: seen.append(url) or Resp())
    fetch_lareqa('mlqa-r', tmp_path, langs=['de'])
    assert seen == ['https://raw.githubusercontent.com/google-research-datasets/lareqa/354d67d/mlqa-r/de.json']
    assert (tmp_path/'lareqa/mlqa-r/de.json').read_bytes() == src.read_bytes()
    assert find_data_dir('mlqa-r', tmp_path, langs=['de']) == tmp_path

def test_local_file_differing_from_pinned_version_warns(tmp_path):
    _write(tmp_path, 'de', GOOD)          # e.g. English text saved as de.json: not the pinned upstream file
    with pytest.warns(UserWarning, match=r'de\.json differs from the pinned upstream xquad-r de file'):
        load_lareqa('xquad-r', data_dir=tmp_path, langs=['de'])

@needs_data
def test_pinned_files_verify(xquad):
    from hybrid_xir.data import verify_pinned
    root = Path(os.environ['HYBRID_XIR_DATA'])/'lareqa'
    assert all(verify_pinned('xquad-r', l, root/'xquad-r'/f'{l}.json') for l in DATASETS['xquad-r']['langs'])

def test_empty_language_file_is_refused(tmp_path):
    _write(tmp_path, 'en', GOOD); _write(tmp_path, 'de', {'data': []})
    with pytest.raises(DataError, match=r'de\.json: no questions in this de file'):
        load_lareqa('xquad-r', data_dir=tmp_path, langs=['en', 'de'])

@pytest.mark.parametrize('path,value,msg', [
    (('sentence_breaks',), 7, "'sentence_breaks' must be a list of \\[start, end\\] integer pairs"),
    (('sentence_breaks',), [[0, 4], ['5', 9]], "'sentence_breaks' must be a list"),
    (('sentences',), 'A b. C d.', "'sentences' must be a list of strings"),
    (('qas', 0, 'answers', 0, 'answer_start'), '5', "'answer_start' an integer"),
    (('qas', 0, 'id'), 17, "'id' and 'question' must be strings")])
def test_wrong_field_types_give_one_clear_error(tmp_path, path, value, msg):
    bad = json.loads(json.dumps(GOOD)); node = bad['data'][0]['paragraphs'][0]
    for k in path[:-1]: node = node[k]
    node[path[-1]] = value
    _write(tmp_path, 'en', bad)
    with pytest.raises(DataError, match=msg): load_lareqa('xquad-r', data_dir=tmp_path, langs=['en'])

def test_sample_dataset_is_parallel_and_never_full(tmp_path):
    "The synthetic sample of the examples: real layout, parallel ids, no pinned-file warning, never a full run."
    import warnings
    from hybrid_xir.data import write_sample_lareqa, load_lareqa
    from hybrid_xir.core import DataError
    write_sample_lareqa(tmp_path, 'mlqa-r', langs=('en', 'es', 'zh'), n_towns=4)
    with warnings.catch_warnings():
        warnings.simplefilter('error')                 # a pinned-checksum warning would fail here
        d = load_lareqa('mlqa-r', data_dir=tmp_path, langs=['en', 'es', 'zh'])
    assert d.sample and not d.full and not d.subset(2).full
    assert len(d.questions) == 36 and d.questions.groupby('qid').lang.nunique().eq(3).all()
    rel = d.answers.merge(d.candidates, left_on='cand', right_index=True, suffixes=('', '_c'))
    assert (rel.lang == rel.lang_c).all() and len(rel) == 36
    with pytest.raises(DataError, match='no sample text'): write_sample_lareqa(tmp_path, langs=('xx',))
