import tracemalloc
import numpy as np, pandas as pd
import pytest
import ir_measures
from ir_measures import AP, RR, R, nDCG, P
from conftest import needs_data
from hybrid_xir.data import LareqaData
from hybrid_xir.evaluate import (evaluate_embeddings, count_outranking, metrics_from_ranks, summary_table,
                                 per_language_table, pair_matrix, write_trec_run, write_trec_qrels, search_topk)

def random_data(seed=0, langs=('en', 'de', 'zh'), n_q=40, n_c=50, d=16):
    "A random LAReQA-like dataset: each question exists in a random non-empty subset of languages (like MLQA-R)."
    rng = np.random.default_rng(seed)
    Q, C, A = [], [], []
    for l in langs:
        C += [dict(uid=f'{l}-{i}', lang=l, text='', context='', para=l) for i in range(n_c)]
    for q in range(n_q):
        present = [l for l in langs if rng.random() < 0.7] or [langs[q % len(langs)]]
        for l in present:
            Q.append(dict(qid=f'q{q}', lang=l, text=''))
            A.append(dict(qid=f'q{q}', lang=l, cand=langs.index(l) * n_c + int(rng.integers(n_c))))
    data = LareqaData('rand', list(langs), pd.DataFrame(Q), pd.DataFrame(C), pd.DataFrame(A).drop_duplicates(['qid', 'lang']),
                      {l: 0 for l in langs})
    E = lambda n: (lambda x: x / np.linalg.norm(x, axis=1, keepdims=True))(rng.normal(size=(n, d))).astype(np.float32)
    return data, E(len(data.questions)), E(len(data.candidates))

def reference(data, Qe, Ce, k_ap=5):
    "The same evaluation through ir_measures (pytrec_eval) on explicit full rankings."
    S = Qe.astype(np.float64) @ Ce.astype(np.float64).T
    uids, clang = data.candidates.uid.to_numpy(), data.candidates.lang.to_numpy()
    ans = data.answers
    rows = []
    measures = [AP, AP @ k_ap, RR, R @ 10, nDCG @ 10, P @ 1]
    for setting in ('mono', 'cross', 'multi'):
        qrels, run = [], []
        for i, (qid, lq) in enumerate(data.questions[['qid', 'lang']].itertuples(index=False)):
            rel = ans[ans.qid == qid]
            targets = ['*'] if setting == 'multi' else ([lq] if setting == 'mono' else [l for l in data.langs if l != lq])
            for lc in targets:
                r = rel if lc == '*' else rel[rel.lang == lc]
                if not len(r): continue
                key = f'{qid}|{lq}|{lc}'
                qrels += [ir_measures.Qrel(key, uids[c], 1) for c in r.cand]
                cols = np.arange(len(uids)) if lc == '*' else np.flatnonzero(clang == lc)
                run += [ir_measures.ScoredDoc(key, uids[c], float(S[i, c])) for c in cols]
        for m in ir_measures.iter_calc(measures, qrels, run):
            q, lq, lc = m.query_id.split('|')
            rows.append(dict(setting=setting, qid=q, qlang=lq, clang=lc, measure=str(m.measure), value=m.value))
    return pd.DataFrame(rows).pivot_table(index=['setting', 'qid', 'qlang', 'clang'], columns='measure', values='value')

@pytest.mark.parametrize('seed', [0, 1])
def test_metrics_match_ir_measures(seed):
    data, Qe, Ce = random_data(seed)
    ours = evaluate_embeddings(data, Qe, Ce, k_ap=5).set_index(['setting', 'qid', 'qlang', 'clang']).sort_index()
    ref = reference(data, Qe, Ce, k_ap=5).sort_index()
    assert len(ours) == len(ref) and (ours.index == ref.index).all()
    for mine, theirs in [('ap', 'AP'), ('ap@5', 'AP@5'), ('mrr', 'RR'), ('r10', 'R@10'), ('ndcg10', 'nDCG@10')]:
        np.testing.assert_allclose(ours[mine], ref[theirs], atol=1e-6, err_msg=mine)
    single = ours.index.get_level_values('setting') != 'multi'   # one relevant: R@1 == P@1
    np.testing.assert_allclose(ours[single]['r1'], ref[single]['P@1'], atol=1e-6)
    multi = ours.xs('multi', level='setting')
    assert (multi.n_rel >= 1).all() and (multi.n_rel > 1).any()   # multi-relevant full-ranking AP is exercised

def test_rank_distance_and_ranks_by_sorting():
    data, Qe, Ce = random_data(3)
    res = evaluate_embeddings(data, Qe, Ce)
    S = Qe.astype(np.float64) @ Ce.astype(np.float64).T
    m = res[res.setting == 'multi'].set_index(['qid', 'qlang'])
    for i, (qid, lq) in enumerate(data.questions[['qid', 'lang']].itertuples(index=False)):
        order = np.argsort(-S[i], kind='stable')
        ranks = 1 + np.flatnonzero(np.isin(order, data.answers[data.answers.qid == qid].cand))
        assert m.loc[(qid, lq), 'rank_dist'] == ranks.max() - ranks.min()
        assert m.loc[(qid, lq), 'rank'] == ranks.min()

def test_block_size_does_not_change_results():
    data, Qe, Ce = random_data(4)
    a = evaluate_embeddings(data, Qe, Ce)
    b = evaluate_embeddings(data, Qe, Ce, block_elems=37)
    pd.testing.assert_frame_equal(a, b)

@pytest.mark.slow
def test_memory_is_bounded_for_large_pools():
    rng = np.random.default_rng(0)
    nq, nc, d = 64, 400_000, 8
    Q = rng.normal(size=(nq, d)).astype(np.float32); C = rng.normal(size=(nc, d)).astype(np.float32)
    rel = rng.integers(0, nc, size=(nq, 2))
    bounds = [(0, nc // 2), (nc // 2, nc)]
    tracemalloc.start()
    counts = count_outranking(Q, C, rel, bounds, block_elems=1 << 16)
    peak = tracemalloc.get_traced_memory()[1]; tracemalloc.stop()
    full_matrix = nq * nc * 4
    assert peak < full_matrix / 20, (peak, full_matrix)   # far below a Q×C score matrix
    S = Q[:3] @ C.T
    srel = np.take_along_axis(S, rel[:3], 1)
    assert counts[:3].sum(2).tolist() == [[int((S[i] > srel[i, j]).sum()) for j in range(2)] for i in range(3)]

@pytest.mark.slow
@needs_data
def test_settings_on_real_data(xquad, mlqa):
    for data, n_pairs in [(xquad, 110), (mlqa, 42)]:
        rng = np.random.default_rng(0)
        Qe = rng.normal(size=(len(data.questions), 4)).astype(np.float32)
        Ce = rng.normal(size=(len(data.candidates), 4)).astype(np.float32)
        res = evaluate_embeddings(data, Qe, Ce)
        assert (res.setting == 'mono').sum() == len(data.questions)
        assert (res.setting == 'multi').sum() == len(data.questions)
        assert res[res.setting == 'cross'][['qlang', 'clang']].drop_duplicates().shape[0] == n_pairs
        # cross-lingual uses only queries whose question exists in the candidate language
        n_rel = data.answers.groupby('qid').size()
        assert (res.setting == 'cross').sum() == int((data.questions.qid.map(n_rel) - 1).sum())
        s = summary_table(res)
        assert s['n_pairs'] == n_pairs and 0 < s['multi mAP'] < 0.05   # random embeddings: chance level
        assert pair_matrix(res).shape == (len(data.langs), len(data.langs))
        assert len(per_language_table(res)) == len(data.langs)

def test_trec_run_agrees_with_ranks(tmp_path):
    data, Qe, Ce = random_data(5)
    run = write_trec_run(data, Qe, Ce, tmp_path/'run.trec', 'multi', k=len(Ce))
    qrels = write_trec_qrels(data, tmp_path/'qrels.trec', 'multi')
    agg = ir_measures.calc_aggregate([AP], ir_measures.read_trec_qrels(str(qrels)), ir_measures.read_trec_run(str(run)))
    res = evaluate_embeddings(data, Qe, Ce)
    assert abs(agg[AP] - res[res.setting == 'multi'].ap.mean()) < 1e-5
    D, I = search_topk(Qe, Ce, 1)
    top1 = (Qe @ Ce.T).argmax(1)
    assert (I[:, 0] == top1).all()

def test_metrics_from_ranks_hand_cases():
    m = metrics_from_ranks(np.array([[3., 1, np.inf], [10, 11, 12]]), k_ap=10)
    assert np.allclose(m['ap'], [(1 + 2 / 3) / 2, (1 / 10 + 2 / 11 + 3 / 12) / 3])
    assert np.allclose(m['ap@10'], [(1 + 2 / 3) / 2, (1 / 10) / 3])
    assert np.allclose(m['r10'], [1, 1 / 3]) and m['rank_dist'].tolist() == [2, 2] and m['n_rel'].tolist() == [2, 3]

# --- ties: the evaluator breaks them as trec_eval does (score, then document id in decreasing byte order) ---------------
from hypothesis import given, settings, strategies as st, HealthCheck
from hybrid_xir.evaluate import tie_order

def tied_data(seed, levels=1, d=2, dup_frac=0.0, **kw):
    """`random_data` with heavy exact ties: integer embeddings in [-levels, levels] (exact scores in float32 and float64;
    levels=0 gives constant embeddings), and a share `dup_frac` of candidates copied from another candidate."""
    data, _, _ = random_data(seed, **kw)
    rng = np.random.default_rng(seed + 100)
    Qe = rng.integers(-levels, levels + 1, (len(data.questions), d)).astype(np.float32)
    Ce = rng.integers(-levels, levels + 1, (len(data.candidates), d)).astype(np.float32)
    if levels == 0: Qe[:], Ce[:] = 1, 1
    dup = rng.random(len(Ce)) < dup_frac
    Ce[dup] = Ce[rng.integers(0, len(Ce), dup.sum())]
    return data, Qe, Ce

def check_against_reference(data, Qe, Ce):
    ours = evaluate_embeddings(data, Qe, Ce, k_ap=5).set_index(['setting', 'qid', 'qlang', 'clang']).sort_index()
    for c in ['ap', 'ap@5', 'r1', 'r10', 'ndcg10', 'mrr']:
        assert ((ours[c] >= 0) & (ours[c] <= 1 + 1e-12)).all(), c
    ref = reference(data, Qe, Ce, k_ap=5).sort_index()
    assert (ours.index == ref.index).all()
    for mine, theirs in [('ap', 'AP'), ('ap@5', 'AP@5'), ('mrr', 'RR'), ('r10', 'R@10'), ('ndcg10', 'nDCG@10')]:
        np.testing.assert_allclose(ours[mine], ref[theirs], atol=1e-6, err_msg=mine)
    return ours

def test_constant_embeddings_score_at_chance_and_match_trec_eval():
    data, Qe, Ce = tied_data(0, levels=0, n_q=30, n_c=40)
    ours = check_against_reference(data, Qe, Ce)
    # every score ties: the ranking is the tie order, the same for every query, so a relevant candidate's rank is its
    # place in that order; the mean AP is at the level of a random ranking, not 1
    tr = tie_order(data.candidates.uid)
    mono = ours.xs('mono', level='setting')
    assert mono.ap.mean() < 0.2 and ours.xs('multi', level='setting').ap.mean() < 0.2
    for (qid, ql, _), row in mono.head(10).iterrows():
        c = data.answers[(data.answers.qid == qid) & (data.answers.lang == ql)].cand.iat[0]
        lang_rows = np.flatnonzero(data.candidates.lang == ql)
        assert row['rank'] == 1 + (tr[lang_rows] < tr[c]).sum()

def test_duplicate_candidates_and_tied_relevant_items():
    # a query whose relevant candidates in two languages are identical (as MLQA-R's identical answer sentences)
    data, Qe, Ce = tied_data(1, levels=1, d=3, dup_frac=0.3)
    a = data.answers
    multi_q = a.groupby('qid').cand.apply(list)
    multi_q = multi_q[multi_q.str.len() > 1]
    for cands in multi_q.head(10): Ce[cands[1:]] = Ce[cands[0]]     # relevant items with equal scores
    ours = check_against_reference(data, Qe, Ce)
    m = ours.xs('multi', level='setting')
    assert (m.ap <= 1).all() and (m.n_rel > 1).any()

@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), levels=st.integers(0, 2), d=st.integers(1, 3), dup=st.floats(0, 0.6))
def test_heavy_ties_property(seed, levels, d, dup):
    data, Qe, Ce = tied_data(seed, levels=levels, d=d, dup_frac=dup, n_q=12, n_c=15)
    check_against_reference(data, Qe, Ce)

def test_ties_are_exact_across_blocks():
    # identical embeddings tie exactly even when BLAS computes them in different blocks and kernels
    data, Qe, Ce = random_data(7, n_c=300, d=37)
    Ce[1::7] = Ce[0]
    a = evaluate_embeddings(data, Qe, Ce)
    for be in (1, 37, 1000):
        pd.testing.assert_frame_equal(a, evaluate_embeddings(data, Qe, Ce, block_elems=be))

def test_non_finite_embeddings_are_refused():
    from hybrid_xir.core import ModelError
    data, Qe, Ce = random_data(8)
    Ce[3, 0] = np.nan
    with pytest.raises(ModelError, match='non-finite'):
        evaluate_embeddings(data, Qe, Ce)

@pytest.mark.slow
@needs_data
def test_constant_model_on_real_data_is_at_chance(mlqa):
    # the defect this guards: a constant-embedding model scored mono mAP 100% and multilingual mAP up to 250%
    E = lambda n: np.ones((n, 4), np.float32)
    res = evaluate_embeddings(mlqa, E(len(mlqa.questions)), E(len(mlqa.candidates)))
    for c in ['ap', 'r1', 'r10', 'ndcg10', 'mrr']: assert res[c].between(0, 1).all(), c
    s = summary_table(res)
    assert s['mono mAP'] < 0.05 and s['cross mAP'] < 0.05 and s['multi mAP'] < 0.05, s
