import math, os, socket
import numpy as np, pandas as pd
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck
from hybrid_xir.sampler import pair_table, HybridBatchSampler, SamplerError

LANGS = ['ar', 'de', 'en', 'es', 'hi', 'vi', 'zh']

@st.composite
def corpora(draw):
    "Random training items: groups with random language subsets (and variants), in one or two datasets."
    n_ds = draw(st.integers(1, 2))
    rows = []
    for d in range(n_ds):
        for g in range(draw(st.integers(6, 30))):
            langs = draw(st.lists(st.sampled_from(LANGS), min_size=1, max_size=len(LANGS), unique=True))
            variants = draw(st.lists(st.sampled_from(langs), max_size=2))     # e.g. back-translated paraphrases
            rows += [dict(dataset=f'd{d}', group=f'g{g}', lang=l) for l in langs + variants]
    return pd.DataFrame(rows)

def feasible(items, bs, alpha):
    "Independent oracle: a monolingual batch needs `bs` groups in one (dataset, language); an X-Y batch `bs` multi-language groups of one dataset."
    it = items.drop_duplicates(['dataset', 'group', 'lang'])
    mono = (it.groupby(['dataset', 'lang']).group.nunique() >= bs).any()
    cross = ((it.groupby(['dataset', 'group']).lang.nunique() > 1).groupby(level=0).sum() >= bs).any()
    return (alpha == 0 or mono) and (alpha == 1 or cross)

def make(items, **kw):
    "The sampler, or None when it refuses the corpus; either way the oracle must agree (a refusal is checked, not skipped)."
    ok = feasible(items, kw['batch_size'], kw.get('alpha', 0.5))
    try: s = HybridBatchSampler(pair_table(items), **kw)
    except SamplerError as e:
        assert not ok, f'refused a corpus that can fill its batches: {e}'
        return None
    assert ok, 'accepted a corpus that cannot fill its batches'
    return s

@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(corpora(), st.integers(1, 6), st.sampled_from([0.0, 0.25, 0.5, 1.0]), st.integers(0, 3))
def test_batch_invariants(items, bs, alpha, seed):
    s = make(items, batch_size=bs, alpha=alpha, seed=seed, batches_per_epoch=40)
    if s is None: return
    pt = s.pairs
    for kind, d, rows in s.plan():
        b = pt.loc[rows]
        assert len(b) == bs and b.group.is_unique, 'two items of one group in a batch'
        assert (b.dataset == d).all()
        if kind == 'mono': assert (b.qlang == b.plang).all() and b.qlang.nunique() == 1
        else: assert (b.qlang != b.plang).all()
        if alpha == 0: assert kind == 'cross'
        if alpha == 1: assert kind == 'mono'

@settings(max_examples=30, deadline=None)
@given(corpora(), st.integers(1, 4), st.integers(0, 5), st.integers(0, 30))
def test_deterministic_and_resumable(items, bs, seed, stop):
    s = make(items, batch_size=bs, seed=seed, batches_per_epoch=30)
    if s is None: return
    s.set_epoch(2)
    full = list(s)
    again = HybridBatchSampler(s.pairs, bs, seed=seed, batches_per_epoch=30); again.set_epoch(2)
    assert list(again) == full
    k = min(stop, len(full))
    part = HybridBatchSampler(s.pairs, bs, seed=seed, batches_per_epoch=30); part.set_epoch(2)
    it = iter(part); seen = [next(it) for _ in range(k)]
    resumed = HybridBatchSampler(s.pairs, bs, seed=seed, batches_per_epoch=30); resumed.load_state_dict(part.state_dict())
    assert seen + list(resumed) == full

@settings(max_examples=30, deadline=None)
@given(corpora(), st.sampled_from([2, 4]), st.integers(0, 5))
def test_rank_slices_rebuild_global_batches(items, world, seed):
    bs = 4
    s = make(items, batch_size=bs, seed=seed, batches_per_epoch=20)
    if s is None: return
    glob = [rows for _, _, rows in s.plan()]
    parts = [list(HybridBatchSampler(s.pairs, bs, seed=seed, batches_per_epoch=20, rank=r, world_size=world)) for r in range(world)]
    for i, g in enumerate(glob):
        assert sorted(sum((p[i] for p in parts), [])) == sorted(g)

def test_epochs_and_seeds_differ():
    items = pd.DataFrame([dict(group=f'g{i}', lang=l) for i in range(30) for l in LANGS[:3]])
    pt = pair_table(items)
    a = HybridBatchSampler(pt, 6, seed=0)
    e0 = list(a); a.set_epoch(1); e1 = list(a)
    assert e0 != e1 and e0 != list(HybridBatchSampler(pt, 6, seed=1))
    # within an epoch, queues cycle: mono batches of one language reuse no group before all were used
    plan = HybridBatchSampler(pt, 6, mode='mono', seed=0, batches_per_epoch=5).plan()
    for l in LANGS[:3]:
        used = [g for k, d, rows in plan for g in pt.group[rows] if pt.qlang[rows[0]] == l]
        assert len(used[:30]) == len(set(used[:30]))

def test_mono_share_matches_alpha():
    items = pd.DataFrame([dict(group=f'g{i}', lang=l) for i in range(50) for l in LANGS[:4]])
    for alpha in (0.25, 0.5, 0.75):
        plan = HybridBatchSampler(pair_table(items), 8, alpha=alpha, seed=0, batches_per_epoch=4000).plan()
        share = np.mean([k == 'mono' for k, _, _ in plan])
        assert abs(share - alpha) < 4 * math.sqrt(alpha * (1 - alpha) / len(plan)), (alpha, share)

def test_mono_language_uniform_and_datasets_by_size():
    items = pd.concat([pd.DataFrame([dict(dataset='big', group=f'g{i}', lang=l) for i in range(60) for l in ('en', 'de', 'zh')]),
                       pd.DataFrame([dict(dataset='small', group=f'h{i}', lang=l) for i in range(20) for l in ('en', 'ar')])])
    s = HybridBatchSampler(pair_table(items), 5, alpha=1.0, seed=0, batches_per_epoch=6000)
    plan = s.plan()
    share_big = np.mean([d == 'big' for _, d, _ in plan])
    assert abs(share_big - 0.75) < 0.03
    langs = pd.Series([s.pairs.qlang[rows[0]] for _, d, rows in plan if d == 'big']).value_counts(normalize=True)
    assert (abs(langs - 1 / 3) < 0.03).all()

def test_errors():
    items = pd.DataFrame([dict(group=f'g{i}', lang='en') for i in range(10)])
    with pytest.raises(SamplerError, match='parallel data'): HybridBatchSampler(pair_table(items), 4, mode='cross')
    with pytest.raises(SamplerError, match='parallel data'): HybridBatchSampler(pair_table(items), 4, alpha=0.5)
    with pytest.raises(SamplerError, match=r'alpha must be in \[0, 1\]'): HybridBatchSampler(pair_table(items), 4, alpha=-0.1)
    with pytest.raises(SamplerError, match='larger than the groups available'): HybridBatchSampler(pair_table(items), 11, mode='mono')
    with pytest.raises(SamplerError, match='not divisible'): HybridBatchSampler(pair_table(items), 4, mode='mono', world_size=3)
    with pytest.raises(SamplerError, match='missing'): pair_table(pd.DataFrame(dict(group=['a'])))

def test_variants_share_a_group_and_never_meet():
    "Paraphrase variants (several items of one group and language) are all used, never two in one batch."
    base = pd.DataFrame([dict(group=f'g{i}', lang=l) for i in range(20) for l in ('en', 'de')])
    var = pd.DataFrame([dict(group=f'g{i}', lang='en') for i in range(0, 20, 2)])
    items = pd.concat([base, var], ignore_index=True)
    pt = pair_table(items)
    plan = HybridBatchSampler(pt, 5, seed=0, batches_per_epoch=600).plan()
    used_q = set()
    for kind, _, rows in plan:
        b = pt.loc[rows]
        assert b.group.is_unique
        used_q |= set(b.q)
    assert set(range(40, 50)) <= used_q      # every variant row served as a query
    for kind, _, rows in plan:
        b = pt.loc[rows]
        if kind == 'cross': assert (b.qlang != b.plang).all()
        else: assert (b.qlang == b.plang).all() and b.qlang.nunique() == 1

def _free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def _worker(rank, world, port, q):
    import torch.distributed as dist
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=world)
    items = pd.DataFrame([dict(group=f'g{i}', lang=l) for i in range(40) for l in ('en', 'de', 'zh')])
    s = HybridBatchSampler(pair_table(items), 8, seed=7, rank=dist.get_rank(), world_size=dist.get_world_size())
    mine = list(s)
    allp = [None] * world
    dist.all_gather_object(allp, mine)
    if rank == 0: q.put(allp)
    dist.destroy_process_group()

@pytest.mark.slow
def test_two_processes_gloo():
    import torch.multiprocessing as mp
    ctx = mp.get_context('spawn'); q = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, 2, port, q)) for r in range(2)]
    for p in procs: p.start()
    got = q.get(timeout=120)
    for p in procs: p.join(60)
    items = pd.DataFrame([dict(group=f'g{i}', lang=l) for i in range(40) for l in ('en', 'de', 'zh')])
    single = [rows for _, _, rows in HybridBatchSampler(pair_table(items), 8, seed=7).plan()]
    assert len(got[0]) == len(single)
    for i, g in enumerate(single):
        assert sorted(got[0][i] + got[1][i]) == sorted(g)
