import json, os
from pathlib import Path
import pandas as pd
import pytest
from conftest import needs_data
from hybrid_xir.core import DataError
from hybrid_xir.train_data import (items_from_lareqa, read_jsonl_items, write_jsonl_items, overlap_report, drop_overlap,
                                   split_by_group, training_items, monolingual_qa_items, sentence_spans, normalize_text,
                                   mmarco_items, translate_train_items)
from hybrid_xir.data import load_lareqa

@needs_data
def test_lareqa_items(mlqa):
    it = items_from_lareqa(mlqa)
    assert len(it) == 4199 and it.group.nunique() == mlqa.questions.qid.nunique()
    # negatives come from the positive's own paragraph and never repeat the positive
    assert all(p not in n for p, n in zip(it.positive, it.negatives))
    assert it.negatives.map(len).max() == 3

@needs_data
def test_zero_shot_protocol_has_no_overlap():
    qa = {'arcd': 1395, 'cmrc2018': 4218, 'iapp_th': 7236}
    for ev, src, n in [('xquad-r', 'mlqa-r', 4199), ('mlqa-r', 'xquad-r', 13090)]:
        items, rep = training_items(ev)
        assert items.groupby('dataset').size().to_dict() == {src: n, **qa} and rep['dropped'].sum() == 0
        # every evaluation text is checked, whatever dataset the item came from
        assert rep.index.get_level_values(0).unique().sort_values().tolist() == sorted([src, *qa])
        only, _ = training_items(ev, qa_sets=())
        assert set(only.dataset) == {src}
    with pytest.raises(DataError, match='unknown QA set'): training_items('xquad-r', qa_sets=('squad',))

@needs_data
def test_overlap_is_detected_and_dropped(xquad):
    it = items_from_lareqa(xquad.subset(5))
    it.loc[0, 'query'] = it.loc[0, 'query'].upper() + '  '     # a trivially disguised copy
    rep = overlap_report(it, xquad)
    assert rep['dropped'].sum() == len(it)
    assert len(drop_overlap(it, xquad)) == 0
    assert normalize_text('Hello, World!') == normalize_text('hello world')

def test_jsonl_roundtrip_and_errors(tmp_path):
    it = pd.DataFrame(dict(dataset='x', group=['g1', 'g1'], lang=['en', 'de'], query=['q', 'f'], positive=['p', 'a'],
                           negatives=[['n'], []]))
    write_jsonl_items(it, tmp_path/'x.jsonl')
    back = read_jsonl_items(tmp_path/'x.jsonl')
    assert back.drop(columns='dataset').to_dict('records') == it.drop(columns='dataset').to_dict('records')
    (tmp_path/'bad.jsonl').write_text('{"group": "a", "lang": "en", "query": "q"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:1: missing or empty field\(s\) \['positive'\]"): read_jsonl_items(tmp_path/'bad.jsonl')
    (tmp_path/'bad2.jsonl').write_text('{"group": \n')
    with pytest.raises(DataError, match='malformed JSON'): read_jsonl_items(tmp_path/'bad2.jsonl')

def test_split_by_group_never_splits_a_group():
    it = pd.DataFrame([dict(dataset='d', group=f'g{i}', lang=l, query='', positive='', negatives=[]) for i in range(200) for l in 'abc'])
    tr, va = split_by_group(it, 0.1, seed=3)
    assert not set(tr.group) & set(va.group) and va.group.nunique() == 20
    assert split_by_group(it, 0.1, seed=3)[1].equals(va)

@needs_data
def test_monolingual_qa_sets():
    qa = monolingual_qa_items()
    n = qa.groupby('dataset').size().to_dict()
    assert n['arcd'] == 1395 and 4200 <= n['cmrc2018'] <= 4221 and 7200 <= n['iapp_th'] <= 7242
    assert qa.groupby('dataset').lang.first().to_dict() == {'arcd': 'ar', 'cmrc2018': 'zh', 'iapp_th': 'th'}
    assert qa.group.is_unique            # groups of size 1
    assert sentence_spans('Dr. Smith went to Washington. He arrived at 5 p.m.', 'en') == [(0, 29), (30, 50)]


def _mmarco_fixture(root, langs=('english', 'german'), n=6):
    "A tiny copy of the mMARCO hub layout: n queries, each with a positive and a negative passage per language."
    def w(rel, rows):
        (root/rel).parent.mkdir(parents=True, exist_ok=True)
        (root/rel).write_text(''.join('\t'.join(r) + '\n' for r in rows), encoding='utf-8')
    w('data/triples.train.ids.small.tsv', [(str(q), str(100 + q), str(200 + q)) for q in range(n)])
    for name in langs:
        w(f'data/google/queries/train/{name}_queries.train.tsv', [(str(q), f'{name} query "{q}"') for q in range(n)])
        w(f'data/google/collections/{name}_collection.tsv',
          [(str(100 + q), f'{name} positive {q}') for q in range(n)] + [(str(200 + q), f'{name} negative {q}') for q in range(n)])
    return root

def test_mmarco_loader_on_fixture(tmp_path):
    root = _mmarco_fixture(tmp_path)
    it = mmarco_items(['en', 'de'], n_queries=4, root=root, seed=1)
    assert len(it) == 8 and it.group.nunique() == 4 and (it.groupby('group').lang.nunique() == 2).all()
    for r in it.itertuples():
        q = r.group.split(':')[1]
        name = {'en': 'english', 'de': 'german'}[r.lang]
        assert (r.query, r.positive, r.negatives) == (f'{name} query "{q}"', f'{name} positive {q}', [f'{name} negative {q}'])
    assert mmarco_items(['en', 'de'], n_queries=4, root=root, seed=1).equals(it)          # seeded sample
    with pytest.raises(DataError, match='no language'): mmarco_items(['xx'], root=root)
    with pytest.raises(DataError, match='missing'): mmarco_items(['fr'], root=root)

def test_translate_train_loader_on_fixture(tmp_path):
    def squad(lang, qs):
        paras = [{'context': ctx, 'qas': [{'id': qid, 'question': q, 'answers': [{'text': a, 'answer_start': ctx.index(a)}]}]}
                 for qid, q, ctx, a in qs]
        (tmp_path/f'{lang}.json').write_text(json.dumps({'version': '1.1', 'data': [{'title': 't', 'paragraphs': paras}]}))
        return tmp_path/f'{lang}.json'
    files = {'en': squad('en', [('a1', 'Who?', 'First. Bob came. Last.', 'Bob'), ('a2', 'When?', 'In 1990. Then.', '1990')]),
             'es': squad('es', [('a1', '¿Quién?', 'Primero. Bob vino. Último.', 'Bob'), ('a2', '¿Cuándo?', 'En 1990. Luego.', '1990')])}
    it = translate_train_items(files)
    assert sorted(it.group.unique()) == ['squad-tt:a1', 'squad-tt:a2'] and len(it) == 4
    assert it.set_index(['group', 'lang']).loc[('squad-tt:a1', 'es'), 'positive'] == 'Bob vino.'
    assert len(translate_train_items(files, max_questions=1)) == 2
    (tmp_path/'bad.json').write_text('{"data": [')
    with pytest.raises(DataError, match='not a readable SQuAD'): translate_train_items({'en': tmp_path/'bad.json'})
