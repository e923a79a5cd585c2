import gzip, json, os, tracemalloc
from pathlib import Path
import numpy as np, pandas as pd
import pytest
from hybrid_xir.core import DataError
from hybrid_xir.benchmarks import (load_beir_dir, load_beir_hub, load_miracl, run_metrics, CorpusIndex, RetrievalData,
                                   evaluate_retrieval, load_tatoeba, evaluate_tatoeba, read_qrels)

def _beir(root, n_docs=30, n_q=6, gz=False, qrels_dir=None):
    root.mkdir(parents=True, exist_ok=True)
    docs = [dict(_id=f'd{i}', title=f'title {i}', text=f'text of document {i}') for i in range(n_docs)]
    qs = [dict(_id=f'q{i}', text=f'query {i}', metadata={}) for i in range(n_q)]
    w = (lambda p, rows: gzip.open(p, 'wt').write(''.join(json.dumps(r) + '\n' for r in rows))) if gz else \
        (lambda p, rows: Path(p).write_text(''.join(json.dumps(r) + '\n' for r in rows)))
    w(root/('corpus.jsonl.gz' if gz else 'corpus.jsonl'), docs); w(root/('queries.jsonl.gz' if gz else 'queries.jsonl'), qs)
    qd = qrels_dir or root/'qrels'; qd.mkdir(parents=True, exist_ok=True)
    (qd/'test.tsv').write_text('query-id\tcorpus-id\tscore\n' + ''.join(f'q{i}\td{3 * i}\t1\nq{i}\td{3 * i + 1}\t2\n' for i in range(n_q - 1)))
    return root

def test_beir_dir_and_errors(tmp_path):
    d = load_beir_dir(_beir(tmp_path/'fix'))
    assert (len(d.corpus), len(d.queries), len(d.judged()), len(d.qrels)) == (30, 6, 5, 10)
    assert d.qrels.rel.tolist()[:2] == [1, 2]
    bad = _beir(tmp_path/'bad')
    with open(bad/'corpus.jsonl', 'a') as f: f.write('{"_id": "x", "text": \n')
    with pytest.raises(DataError, match=r'corpus.jsonl:31: malformed JSON'): load_beir_dir(bad)
    unk = _beir(tmp_path/'unk')
    with open(unk/'qrels'/'test.tsv', 'a') as f: f.write('q0\tnope\t1\n')
    with pytest.raises(DataError, match='not in the corpus'): load_beir_dir(unk)
    with pytest.raises(DataError, match='not a directory'): load_beir_dir(tmp_path/'missing')
    with pytest.raises(DataError, match=r'no file matching .*dev'): load_beir_dir(tmp_path/'fix', split='dev')

def test_hub_loaders_on_fixtures(tmp_path):
    hub = tmp_path/'hub'
    _beir(hub/'BeIR'/'fix', gz=True, qrels_dir=hub/'BeIR'/'fix-qrels')
    d = load_beir_hub('fix', root=hub)
    assert d.name == 'beir:fix' and len(d.corpus) == 30 and len(d.judged()) == 5
    _beir(hub/'clarin-knext'/'fix-pl', qrels_dir=hub/'clarin-knext'/'fix-pl-qrels')
    assert load_beir_hub('fix', 'beir-pl', root=hub).lang == 'pl'
    _beir(hub/'clips'/'beir-nl-fix')                                   # qrels inside the same repository
    assert len(load_beir_hub('fix', 'beir-nl', root=hub).qrels) == 10
    with pytest.raises(DataError, match='unknown BEIR family'): load_beir_hub('fix', 'beir-xx', root=hub)
    with pytest.raises(DataError, match='missing'): load_beir_hub('nothere', root=hub)
    # MIRACL: TSV topics, TREC qrels, gzipped JSONL passages with docid/title/text
    m = hub/'miracl'/'miracl'/'miracl-v1.0-sw'
    (m/'topics').mkdir(parents=True); (m/'qrels').mkdir()
    (m/'topics'/'topics.miracl-v1.0-sw-dev.tsv').write_text('1\tSwali la kwanza\n2\tSwali la pili\n')
    (m/'qrels'/'qrels.miracl-v1.0-sw-dev.tsv').write_text('1\tQ0\t10#0\t1\n1\tQ0\t11#0\t0\n2\tQ0\t12#1\t1\n')
    c = hub/'miracl'/'miracl-corpus'/'miracl-corpus-v1.0-sw'; c.mkdir(parents=True)
    with gzip.open(c/'docs-0.jsonl.gz', 'wt') as f:
        for d_ in ['10#0', '11#0', '12#1', '13#0']: f.write(json.dumps(dict(docid=d_, title='T', text=f'maandishi {d_}')) + '\n')
    mi = load_miracl('sw', root=hub)
    assert (len(mi.corpus), len(mi.queries), len(mi.judged())) == (4, 2, 2) and mi.qrels.rel.tolist() == [1, 0, 1]

def test_metrics_match_ir_measures():
    import ir_measures
    from ir_measures import nDCG, R, RR, AP
    rng = np.random.default_rng(0)
    qrels, run = [], {}
    for q in range(40):
        docs = [f'd{i}' for i in rng.choice(300, 150, replace=False)]
        for d in rng.choice(docs + [f'x{q}'], rng.integers(1, 8), replace=False): qrels.append((f'q{q}', str(d), int(rng.integers(0, 3))))
        run[f'q{q}'] = {d: float(s) for d, s in zip(docs, rng.random(len(docs)))}
    qrels = pd.DataFrame(qrels, columns=['qid', 'doc_id', 'rel'])
    ours = run_metrics(run, qrels).set_index('qid')
    ref_q = [ir_measures.Qrel(q, d, r) for q, d, r in qrels.itertuples(index=False)]
    ref_r = [ir_measures.ScoredDoc(q, d, s) for q, ds in run.items() for d, s in ds.items()]
    ref = {}
    for m in ir_measures.iter_calc([nDCG@10, R@100, RR@10, AP], ref_q, ref_r): ref[(m.query_id, str(m.measure))] = m.value
    assert len(ours) > 30
    for q, r in ours.iterrows():
        assert np.isclose(r['nDCG@10'], ref[(q, 'nDCG@10')]) and np.isclose(r['R@100'], ref[(q, 'R@100')])
        assert np.isclose(r['MRR@10'], ref[(q, 'RR@10')]) and np.isclose(r['AP'], ref[(q, 'AP')])

class FakeEncoder:
    "Deterministic hashed vectors; can be told to die after n encode calls."
    fingerprint, max_seq_length, progress = 'fake', 512, False
    def __init__(self, die_after=None): self.calls, self.die_after, self.st = 0, die_after, type('S', (), {'max_seq_length': 512})()
    def encode(self, texts, kind='passage', desc=None, use_cache=True):
        self.calls += 1
        if self.die_after is not None and self.calls > self.die_after: raise KeyboardInterrupt('killed')
        out = np.stack([np.random.default_rng(abs(hash(t.split(' ')[-1])) % 2**32).standard_normal(16) for t in texts]).astype(np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

def test_corpus_shards_resume_and_approximate_search(tmp_path):
    d = load_beir_dir(_beir(tmp_path/'fix', n_docs=50))
    full, summ, _ = evaluate_retrieval(FakeEncoder(), d, chunk=8, root=tmp_path/'a', progress=False)
    with pytest.raises(KeyboardInterrupt): evaluate_retrieval(FakeEncoder(die_after=4), d, chunk=8, root=tmp_path/'b', progress=False)
    left = len(list((tmp_path/'b').rglob('shard-*.npy')))
    assert left == 3 and not list((tmp_path/'b').rglob('*.tmp*'))           # 1 call for the queries, then 3 shards
    per, summ2, tim = evaluate_retrieval(FakeEncoder(), d, chunk=8, root=tmp_path/'b', progress=False)
    assert tim['shards_encoded'] == 7 - 3 and summ2 == summ and per.equals(full)
    _, approx, _ = evaluate_retrieval(FakeEncoder(), d, chunk=8, root=tmp_path/'a', index='hnsw', progress=False)
    assert abs(approx['nDCG@10'] - summ['nDCG@10']) < 1e-6                  # 50 docs: HNSW is exact here
    with pytest.raises(Exception, match="index must be"): evaluate_retrieval(FakeEncoder(), d, root=tmp_path/'a', index='lsh', progress=False)

@pytest.mark.slow
def test_search_memory_is_bounded_on_a_million_vectors(tmp_path):
    "1M random unit vectors (256 MB) as a corpus: streaming search allocates a small fraction of it."
    rng = np.random.default_rng(0)
    chunk, dim, n = 50_000, 64, 1_000_000
    paths = []
    for i in range(0, n, chunk):
        v = rng.standard_normal((chunk, dim), dtype=np.float32); v /= np.linalg.norm(v, axis=1, keepdims=True)
        np.save(tmp_path/f'shard-{i:08d}.npy', v); paths.append(tmp_path/f'shard-{i:08d}.npy')
    target = np.load(paths[7])[123]
    Q = np.stack([target, rng.standard_normal(dim).astype(np.float32)])
    ci = CorpusIndex.from_shards(paths, chunk)
    assert ci.n == n
    tracemalloc.start()
    S, I = ci.search(Q, k=100)
    peak = tracemalloc.get_traced_memory()[1]; tracemalloc.stop()
    assert I[0, 0] == 7 * chunk + 123 and np.isclose(S[0, 0], 1, atol=1e-5)
    assert peak < n * dim * 4 / 10, peak      # < 10% of the corpus (one shard is 5%)

def test_tatoeba(tmp_path):
    t = tmp_path/'tatoeba'; t.mkdir()
    (t/'tatoeba.deu-eng.deu').write_text('eins\nzwei\ndrei\n'); (t/'tatoeba.deu-eng.eng').write_text('one\ntwo\nthree\n')
    pairs = load_tatoeba(tmp_path, langs=['de'])
    class Same:
        "Maps each translation pair to one vector."
        ids = {'eins': 0, 'one': 0, 'zwei': 1, 'two': 1, 'drei': 2, 'three': 2}
        def encode(self, texts, kind='query'): return np.eye(3, dtype=np.float32)[[self.ids[x] for x in texts]]
    acc = evaluate_tatoeba(Same(), pairs)
    assert acc.loc['de', 'xx→en'] == 100 and acc.loc['de', 'en→xx'] == 100 and acc.loc['mean', 'pairs'] == 3
    (t/'tatoeba.deu-eng.eng').write_text('one\ntwo\n')
    with pytest.raises(DataError, match='line-aligned'): load_tatoeba(tmp_path, langs=['de'])
    with pytest.raises(DataError, match='missing'): load_tatoeba(tmp_path, langs=['ar'])

def test_run_retrieval_eval_end_to_end(tmp_path):
    "The call behind nbs/eval_retrieval.ipynb and `hybrid-xir retrieval`: a local model on a BEIR directory, results folder and errors."
    import json
    from hybrid_xir.benchmarks import run_retrieval_eval
    from hybrid_xir.params import RetrievalParams
    from hybrid_xir.train import make_tiny_encoder
    from hybrid_xir.core import HybridXirError
    from hybrid_xir.registry import NotTrainedError
    tiny = make_tiny_encoder(tmp_path/'tiny')
    r = run_retrieval_eval(RetrievalParams(model=str(tiny), dataset=str(_beir(tmp_path/'fix')), k=10, out_dir=str(tmp_path/'out'), progress=False))
    m = json.loads((tmp_path/'out'/'tiny'/'fix'/'metrics.json').read_text())
    assert m['summary'] == r['summary'] and 0 <= m['summary']['nDCG@10'] <= 100 and m['k'] == 10 and m['trained_for'] is None
    with pytest.raises(HybridXirError, match='index must be one of'): run_retrieval_eval(model=str(tiny), index='lsh')
    with pytest.raises(NotTrainedError, match='not trained yet'):
        run_retrieval_eval(model='hybrid@seed=987654', dataset=str(tmp_path/'fix'), out_dir=str(tmp_path/'out2'), progress=False)
    assert not (tmp_path/'out2').exists()
