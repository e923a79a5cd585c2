import json, os
from pathlib import Path
import pandas as pd
import pytest
from conftest import needs_data
from hybrid_xir.core import DataError
from hybrid_xir.train_data import (items_from_lareqa, read_jsonl_items, write_jsonl_items, overlap_report, drop_overlap,
                                   split_by_group, training_items, monolingual_qa_items, sentence_spans, normalize_text)
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
    for ev, n in [('xquad-r', 4199), ('mlqa-r', 13090)]:
        items, rep = training_items(ev)
        assert len(items) == n and rep['dropped'].sum() == 0
        assert set(items.dataset) == {'mlqa-r' if ev == 'xquad-r' else 'xquad-r'}

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
