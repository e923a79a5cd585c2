"""The training-data store (hybrid_xir.store): mMARCO in mMARCO's file layout, written here by hand, built into the store;
the three bad inputs, a build killed with SIGKILL that resumes to the same bytes, and the id sampler's guarantees."""
import json, os, signal, subprocess, sys, time
from pathlib import Path
import numpy as np, pandas as pd
import pytest
from conftest import ROOT

NAMES = {'en': 'english', 'de': 'german', 'zh': 'chinese'}     # mMARCO's file names (its loader script, mmarco.py)

def write_tsv(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(''.join('\t'.join(map(str, r)) + '\n' for r in rows), encoding='utf-8')

def mmarco_layout(root, langs=('en', 'de'), n_q=40, n_p=120, per_q=3, seed=0):
    "data/google/{queries/train,collections}/<language>_*.tsv and data/triples.train.ids.small.tsv; returns the triples."
    rng = np.random.default_rng(seed)
    qids = sorted(rng.choice(10 * n_q, n_q, replace=False).tolist())
    for l in langs:
        write_tsv(root/f'data/google/queries/train/{NAMES[l]}_queries.train.tsv', [(q, f'{l} q{q}') for q in qids])
        write_tsv(root/f'data/google/collections/{NAMES[l]}_collection.tsv', [(p, f'{l} p{p}') for p in range(n_p)])
    trip = [(q, int(rng.integers(n_p)), int(rng.integers(n_p))) for q in qids[: n_q // 2] for _ in range(per_q)]
    order = rng.permutation(len(trip))
    write_tsv(root/'data/triples.train.ids.small.tsv', [trip[i] for i in order])
    return trip

def test_store_holds_every_text_once_and_the_triples_as_rows(tmp_path):
    from hybrid_xir.store import build_mmarco_store, Store
    trip = mmarco_layout(tmp_path/'src')
    st = Store(build_mmarco_store(tmp_path/'src', tmp_path/'store', langs=('en', 'de'), progress=False))
    assert st.meta | {'source': None} == dict(dataset='mmarco', langs=['en', 'de'], queries=40, passages=120, triples=60, groups=20, source=None)
    assert len(st) == 20 and st.counts.tolist() == [3] * 20
    # every triple, looked up through the store's rows, names the source file's ids
    got = sorted((int(a.split('q')[1]), int(b.split('p')[1]), int(c.split('p')[1])) for a, b, c in zip(
        st.texts('query', 'en', st.triples[:, 0]), st.texts('passage', 'de', st.triples[:, 1]), st.texts('passage', 'en', st.triples[:, 2])))
    assert got == sorted(trip)

@pytest.mark.parametrize('fault, message', [
    ('duplicate query id', r"english_queries.train.tsv: duplicate query id \d+"),
    ('short language file', r"german_collection.tsv: 1 rows fewer than .*english_collection.tsv; first missing id 119"),
    ('missing passage id', r"triples.train.ids.small.tsv: names passage id 999, which the passage files do not have"),
])
def test_bad_input_is_one_error_naming_file_and_id(tmp_path, fault, message):
    from hybrid_xir.core import DataError
    from hybrid_xir.store import build_mmarco_store
    src = tmp_path/'src'; mmarco_layout(src)
    if fault == 'duplicate query id':
        f = src/'data/google/queries/train/english_queries.train.tsv'; f.write_text(f.read_text() + f.read_text().splitlines()[3] + '\n')
    elif fault == 'short language file':
        f = src/'data/google/collections/german_collection.tsv'; f.write_text(''.join(f.read_text().splitlines(True)[:-1]))
    else:
        f = src/'data/triples.train.ids.small.tsv'; f.write_text(f.read_text() + '%s\t999\t0\n' % f.read_text().split('\t')[0])
    with pytest.raises(DataError, match=message): build_mmarco_store(src, tmp_path/'store', langs=('en', 'de'), progress=False)
    files = sorted(p.name for p in (tmp_path/'store').iterdir())
    assert 'meta.json' not in files and not [f for f in files if f.endswith('.tmp')]      # nothing half-written
    bad = {'duplicate query id': 'ids.query.npy', 'short language file': 'passage.de.arrow', 'missing passage id': 'triples.npy'}[fault]
    assert bad not in files

def test_a_killed_build_resumes_to_the_same_bytes(tmp_path):
    """SIGKILL a build just after it publishes one file (so, in the middle of writing the next), three times at three
    stages; each time the store is incomplete, and the resumed build equals an uninterrupted one, byte for byte."""
    from hybrid_xir.store import build_mmarco_store
    src = tmp_path/'src'; mmarco_layout(src, ('en', 'de', 'zh'), n_q=50_000, n_p=300_000, per_q=10)
    ref = build_mmarco_store(src, tmp_path/'ref', langs=('en', 'de', 'zh'), progress=False)
    want = {p.name: p.read_bytes() for p in ref.iterdir()}
    run = tmp_path/'run'
    code = f"from hybrid_xir.store import build_mmarco_store; build_mmarco_store({str(src)!r}, {str(run)!r}, langs=('en', 'de', 'zh'), progress=False)"
    for after in ('ids.passage.npy', 'passage.de.arrow', 'query.zh.arrow'):
        p = subprocess.Popen([sys.executable, '-c', code])
        while p.poll() is None and not (run/after).exists(): time.sleep(0.002)
        p.send_signal(signal.SIGKILL); p.wait()
        assert not (run/'meta.json').exists(), f'the build finished before the kill after {after}'
    build_mmarco_store(src, run, langs=('en', 'de', 'zh'), progress=False)
    got = {p.name: p.read_bytes() for p in run.iterdir()}
    assert set(got) == set(want) and all(got[k] == want[k] for k in want if k != 'meta.json')

@pytest.fixture
def two_stores(tmp_path):
    "mMARCO in en, de, zh (20 groups) and a second, larger store in en, de only (60 groups)."
    from hybrid_xir.store import build_mmarco_store, Store
    mmarco_layout(tmp_path/'a', ('en', 'de', 'zh'), n_q=40)
    mmarco_layout(tmp_path/'b', ('en', 'de'), n_q=120, seed=1)
    return {'mmarco': Store(build_mmarco_store(tmp_path/'a', tmp_path/'sa', langs=('en', 'de', 'zh'), progress=False)),
            'other': Store(build_mmarco_store(tmp_path/'b', tmp_path/'sb', langs=('en', 'de'), progress=False))}

def test_id_sampler_draws_the_papers_batches(two_stores):
    from hybrid_xir.store import StoreBatchSampler
    s = StoreBatchSampler(two_stores, 8, seed=0, sizes={'mmarco': 1.0, 'other': 3.0})
    assert s.batches_per_epoch == (20 + 60) // 8
    s.batches_per_epoch = 20_000
    plan = s.plan()
    log = pd.DataFrame([dict(kind=k, dataset=d, lang=l) for k, d, g, l, pl in plan])
    assert all(len(set(g.tolist())) == len(g) == 8 for _, _, g, _, _ in plan)            # no group twice in a batch
    shares = log.lang.value_counts(normalize=True)
    assert (abs(shares - 1 / 3) < 0.02).all(), shares                                   # the language first, uniformly
    en = log[log.lang == 'en'].dataset.value_counts(normalize=True)
    assert abs(en['other'] - 0.75) < 0.02 and (log[log.lang == 'zh'].dataset == 'mmarco').all()   # then the dataset by size
    assert abs((log.kind == 'mono').mean() - 0.5) < 0.02
    cross = [(l, pl) for k, d, g, l, pl in plan if k == 'cross']
    assert all(l not in pl for l, pl in cross[:500])                                    # X-Y: the passages in other languages
    mono = [(l, pl) for k, d, g, l, pl in plan if k == 'mono']
    assert all(set(pl) == {l} for l, pl in mono[:500])

def test_id_sampler_is_deterministic_and_shards_for_ddp(two_stores):
    from hybrid_xir.store import StoreBatchSampler
    mk = lambda **k: StoreBatchSampler(two_stores, 8, seed=3, **k)
    a, b = mk().plan(), mk().plan()
    assert all(x[1] == y[1] and (x[2] == y[2]).all() and x[4] == y[4] for x, y in zip(a, b))
    assert any((x[2] != y[2]).any() for x, y in zip(a, mk().plan(epoch=1)))
    r0, r1 = list(mk(rank=0, world_size=2)), list(mk(rank=1, world_size=2))
    for (k, d, g, l, pl), x, y in zip(a, r0, r1):                                       # the ranks split each global batch
        assert x[2].tolist() + y[2].tolist() == g.tolist() and list(x[4]) + list(y[4]) == pl

def test_fetch_returns_the_groups_texts(two_stores):
    from hybrid_xir.store import StoreBatchSampler
    st = two_stores['mmarco']
    s = StoreBatchSampler({'mmarco': st}, 4, seed=0)
    trip = pd.DataFrame(st.triples, columns=['q', 'p', 'n'])
    for b in s.plan()[:5]:
        kind, d, g, l, pl = b
        x = s.fetch(b, np.random.default_rng(0))
        assert [a.split()[0] for a in x['anchor']] == [l] * 4 and [p.split()[0] for p in x['positive']] == pl
        for a, p, n in zip(x['anchor'], x['positive'], x['negative']):
            q = st.texts('query', 'en', st.groups).index('en ' + a.split()[1])          # the group of the anchor
            mine = trip[trip.q == st.groups[q]]
            pos = st.texts('passage', 'en', mine.p); neg = st.texts('passage', 'en', mine.n)
            assert ('en ' + p.split()[1], 'en ' + n.split()[1]) in set(zip(pos, neg))      # one of the group's own triples

def test_items_store_beside_mmarco(two_stores, tmp_path):
    "A QA set whose groups have different languages (th only in some), sampled with mMARCO: every pair is in its group's languages."
    from hybrid_xir.store import build_items_store, Store, StoreBatchSampler
    rows = [dict(dataset='qa', group=f'qa:{i}', lang=l, query=f'{l} q{i}', positive=f'{l} a{i}', negatives=[f'{l} n{i}'] if i % 3 else [])
            for i in range(60) for l in (('en', 'th') if i % 2 else ('en',))]
    qa = Store(build_items_store(pd.DataFrame(rows), tmp_path/'qa'))
    s = StoreBatchSampler({'mmarco': two_stores['mmarco'], 'qa': qa}, 8, seed=0, batches_per_epoch=3000)
    plan = s.plan()
    rng = np.random.default_rng(0)
    langs = pd.Series([l for _, _, _, l, _ in plan]).value_counts(normalize=True)
    assert set(langs.index) == {'en', 'de', 'zh', 'th'} and (abs(langs - 0.25) < 0.03).all(), langs
    for b in plan[:300]:
        kind, d, g, l, pl = b
        x = s.fetch(b, rng)
        if d != 'qa': continue
        for gi, a, p, n, plang in zip(g, x['anchor'], x['positive'], x['negative'], pl):
            i = int(a.split('q')[1])
            assert a == f'{l} q{i}' and p == f'{plang} a{i}' and plang in qa.langs_of(gi)
            # its own hard negative when it has one, else another group's positive in the passage language
            assert n == f'{plang} n{i}' if i % 3 else (n.startswith(f'{plang} a') and n != p)
