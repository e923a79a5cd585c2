"The paper's published numbers: copied unchanged, read correctly, and shown beside ours (never mixed in)."
import filecmp
import numpy as np, pandas as pd
import pytest
from conftest import ROOT
from hybrid_xir.paper import (PAPER_FILES, load_paper, paper_summary, paper_per_language, beside_paper, paper_evidence,
                              with_paper_claims, copy_paper_tables)
from hybrid_xir.core import DataError

SHARED_PAPER = ROOT.parent/'shared'/'paper'

@pytest.mark.skipif(not SHARED_PAPER.exists(), reason='../shared/paper not found')
def test_committed_copy_equals_the_source():
    for f in [*PAPER_FILES.values(), 'README.md']:
        assert filecmp.cmp(ROOT/'reports'/'paper'/f, SHARED_PAPER/f, shallow=False), f

def test_summary_agrees_with_the_per_language_means():
    "Table 1 (the paper's summary) equals the printed means of Tables 3-6 to within the paper's rounding."
    p = load_paper(ROOT/'reports'/'paper')
    s = paper_summary(p)
    assert len(s) == 12 and s[['mono mAP', 'cross mAP', 'multi mAP']].stack().between(0, 100).all()
    for ds in ('xquad-r', 'mlqa-r'):
        for metric in ('mono mAP', 'cross mAP', 'multi mAP'):
            pl = paper_per_language(p, ds, metric)
            for col in pl.columns:
                _, b, samp = col.split(' ', 2)
                summ = s[(s.dataset == ds) & (s['backbone (paper)'] == b) & (s.sampling == samp)][metric].item()
                assert abs(pl.loc['mean', col] - summ) < 0.25, (ds, metric, col)

def test_beside_paper_and_claim_agreement():
    p = load_paper(ROOT/'reports'/'paper')
    ours = pd.DataFrame({'pretrained': [50.0, 40.0, 45.0], 'hybrid': [60.0, 55.0, 57.5]}, index=['en', 'el', 'mean'])
    b = beside_paper(ours, p, 'xquad-r', 'cross mAP')
    assert list(b.columns[:2]) == ['pretrained', 'hybrid'] and all(c.startswith('paper ') for c in b.columns[2:])
    assert b.loc['mean', 'hybrid'] == 57.5 and list(b.index)[-1] == 'mean'
    ev = paper_evidence(p)
    assert ev['hybrid reduces language bias (rank distance) compared with X-X-mono training'][0] == 'supported'   # Table 2: 287 < 410, ...
    claims = pd.DataFrame(dict(claim=['hybrid reduces language bias (rank distance) compared with X-X-mono training',
                                      'X-X-mono training is best in monolingual retrieval',
                                      'back-translation inside hybrid batches improves cross-lingual retrieval (hybrid_bt vs hybrid)'],
                               verdict=['not supported', 'supported', 'supported']))
    out = with_paper_claims(claims, p)
    assert list(out['vs paper']) == ['disagrees', 'disagrees', '—']   # X-X-mono best in mono: 0 of 4 on the unrounded means and out.verdict.tolist() == claims.verdict.tolist()

def test_missing_paper_files_are_one_clear_error(tmp_path):
    with pytest.raises(DataError, match="the paper's tables are not in"): load_paper(tmp_path)
    with pytest.raises(DataError, match="lacks the paper's table file"): copy_paper_tables(tmp_path, tmp_path/'out')
    assert not (tmp_path/'out').exists()

def test_grid_tables_carry_the_paper_beside_ours(tmp_path):
    "With reports/paper beside the tables, the claims table gains the paper's verdict and per-language tables their paper twins."
    import shutil
    from hybrid_xir.aggregate import synthetic_runs, write_reports
    gf = synthetic_runs(tmp_path/'runs', '[defaults]\ndatasets = ["xquad-r", "mlqa-r"]\nseeds = [1, 2]\n[main]\nmodels = ["pretrained", "xx", "xy", "hybrid"]\n')
    shutil.copytree(ROOT/'reports'/'paper', tmp_path/'paper')
    res = write_reports(gf, tmp_path/'runs', tmp_path/'tables', tmp_path/'figures', n_perm=200)
    assert {'paper verdict', 'vs paper'} <= set(res['claims'].columns)
    assert (tmp_path/'tables'/'paper_summary.md').exists() and (tmp_path/'tables'/'per_language_xquad-r_mono_mAP_vs_paper.md').exists()
    b = res['per_language_vs_paper'][('xquad-r', 'mono mAP')]
    assert 'paper LaBSE hybrid' in b.columns and 'hybrid' in b.columns
