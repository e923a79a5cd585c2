"""Scale benchmark of the training-data store (issue 28): synthetic mMARCO at the paper's id counts, built into the
store, then sampled; and the current item-table code (mmarco_items, pair_table, pair_dataset) at the scales it survives.

    python scripts/bench_store.py --scales 0.01 0.1 1 --old 0.01 0.1 --out reports/bench

Each measurement runs in its own process (peak RSS from the kernel: that process's ru_maxrss). The texts are short
(a few words), so that the full-scale store fits on this machine's disk; sizes are the paper's (Table 9 and mMARCO's
files): 8.84M passages and 0.81M queries in each of 7 languages, 39.78M triples."""
import argparse, json, os, resource, shutil, subprocess, sys, time
from pathlib import Path

PASSAGES, QUERIES, TRIPLES = 8_841_823, 808_731, 39_780_811
QA_GROUPS, MFAQ_PAIRS = 520_000, 3_567_659           # the QA sets' groups (each in 9 languages) and MFAQ's English pairs
LANGS = ('en', 'ar', 'zh', 'de', 'es', 'ru', 'hi')
QA_LANGS = ('en', 'ar', 'zh', 'de', 'es', 'ru', 'th', 'tr', 'hi')
SIZES = {'mmarco': 39_780_811, 'qa': 343_355, 'mfaq': 3_567_659}   # Table 9 per language (the QA sets: their sum)


def write_synthetic_mmarco(root, scale, langs=LANGS, seed=0):
    "mMARCO's files (the layout of its loader script) with `scale` x the paper's counts of short synthetic texts."
    import numpy as np, pyarrow as pa, pyarrow.compute as pc, pyarrow.csv as pacsv
    from hybrid_xir.train_data import MMARCO_LANGS
    root = Path(root)
    n_p, n_q, n_t = (max(1, int(x * scale)) for x in (PASSAGES, QUERIES, TRIPLES))
    opts = pacsv.WriteOptions(include_header=False, delimiter='\t', quoting_style='none')
    def tsv(path, ids, prefix):
        path.parent.mkdir(parents=True, exist_ok=True)
        with pacsv.CSVWriter(str(path), pa.schema([('id', pa.int64()), ('text', pa.string())]), write_options=opts) as w:
            for a in range(0, len(ids), 1 << 20):
                i = pa.array(ids[a:a + (1 << 20)])
                s = pc.cast(i, pa.string())
                w.write_table(pa.table(dict(id=i, text=pc.binary_join_element_wise(prefix, s, 'w', pc.cast(pc.divide(i, 7), pa.string()), ' '))))
    rng = np.random.default_rng(seed)
    pids, qids = np.arange(n_p, dtype=np.int64), np.sort(rng.choice(4 * n_q, n_q, replace=False)).astype(np.int64)
    for l in langs:
        name = MMARCO_LANGS[l]
        tsv(root/f'data/google/queries/train/{name}_queries.train.tsv', qids, f'{l} query')
        tsv(root/f'data/google/collections/{name}_collection.tsv', pids, f'{l} passage')
    path = root/'data/triples.train.ids.small.tsv'
    with pacsv.CSVWriter(str(path), pa.schema([(c, pa.int64()) for c in ('qid', 'pos', 'neg')]), write_options=opts) as w:
        with_triples = qids[: max(1, n_q // 2)]       # about half the training queries have triples, as in the small file
        for a in range(0, n_t, 1 << 20):
            k = min(1 << 20, n_t - a)
            w.write_table(pa.table(dict(qid=rng.choice(with_triples, k), pos=rng.integers(0, n_p, k), neg=rng.integers(0, n_p, k))))
    return dict(passages=n_p, queries=n_q, triples=n_t)


def synthetic_items(dataset, n_groups, langs):
    "Training items of `n_groups` groups, each in every language of `langs`, with short texts and one hard negative."
    import numpy as np, pandas as pd
    g = np.repeat(np.arange(n_groups), len(langs)); l = np.tile(np.array(langs, object), n_groups)
    s = pd.Series(g).astype(str).to_numpy(object)
    return pd.DataFrame(dict(dataset=dataset, group=s, lang=l, query=l + ' question ' + s, positive=l + ' answer ' + s,
                             negatives=[[x] for x in l + ' other ' + s]))


def du(path): return sum(f.stat().st_size for f in Path(path).rglob('*') if f.is_file())


def child(kind, args):
    "Run one measurement in a fresh process; returns its JSON result with its peak RSS."
    t0 = time.time()
    r = subprocess.run([sys.executable, __file__, '--child', kind, json.dumps(args)], capture_output=True, text=True)
    if r.returncode: return dict(error=(r.stderr.strip().splitlines() or ['killed'])[-1], seconds=time.time() - t0)
    return json.loads(r.stdout.strip().splitlines()[-1])


def run_child(kind, a):
    import numpy as np
    t0 = time.time()
    if kind == 'build':
        from hybrid_xir.store import build_mmarco_store
        build_mmarco_store(a['root'], a['dest'], progress=False)
        res = dict(seconds=time.time() - t0)
    elif kind == 'build_items':
        from hybrid_xir.store import build_items_store
        for name, n, langs in (('qa', a['qa'], QA_LANGS), ('mfaq', a['mfaq'], ('en',))):
            build_items_store(synthetic_items(name, n, langs), Path(a['dest'])/name)
        res = dict(seconds=time.time() - t0)
    elif kind == 'sample':
        from hybrid_xir.store import Store, StoreBatchSampler
        st = {d: Store(Path(a['dest'])/d) for d in ('mmarco', 'qa', 'mfaq') if (Path(a['dest'])/d).exists()}
        s = StoreBatchSampler(st, 100, seed=0, sizes=SIZES)
        s.batches_per_epoch = min(s.batches_per_epoch, a['batches'])
        rng = np.random.default_rng(0)
        t1 = time.time(); plan = s.plan(); t2 = time.time()
        n = 0
        for b in plan:
            x = s.fetch(b, rng); n += 1
        t3 = time.time()
        res = dict(batches=n, plan_s=t2 - t1, fetch_s=t3 - t2, batches_per_s=n / (t3 - t1), example=x['anchor'][0] + ' | ' + x['positive'][0])
    elif kind == 'old':
        from hybrid_xir.train_data import mmarco_items
        from hybrid_xir.sampler import pair_table
        from hybrid_xir.train import pair_dataset
        os.environ['HYBRID_XIR_HUB_MIRROR'] = a['mirror']
        items = mmarco_items(LANGS, n_queries=None, root='unicamp-dl/mmarco')
        t1 = time.time()
        pt = pair_table(items); ds = pair_dataset(items, pt)
        res = dict(seconds=time.time() - t0, items_s=t1 - t0, items=len(items), pairs=len(pt))
    res['peak_rss_gb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20      # KB -> GB, this process's peak
    print(json.dumps(res))


def plot(csv, png):
    "Peak RSS against scale: the store's build and sampling, and the current item-table code."
    import pandas as pd, matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    t = pd.read_csv(csv)
    fig, ax = plt.subplots(figsize=(6, 4))
    st, old = t[t.code == 'store'], t[t.code != 'store']
    ax.plot(st.scale, st[['build_peak_rss_gb', 'items_build_peak_rss_gb']].max(axis=1), 'o-', label='store: build (largest stage)')
    ax.plot(st.scale, st.sample_peak_rss_gb, 's-', label='store: sampling with texts')
    ax.plot(old.scale, old.build_peak_rss_gb, '^--', label='current code: mMARCO items + pair table')
    ax.axhline(8, color='grey', lw=0.8, ls=':'); ax.text(st.scale.min(), 8.3, 'target 8 GB', color='grey', fontsize=8)
    ax.set(xscale='log', xlabel="scale (1 = the paper's sizes)", ylabel='peak RSS (GB)', title='Training data: memory against scale')
    ax.legend(fontsize=8); fig.tight_layout(); fig.savefig(png, dpi=110); plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--scales', type=float, nargs='*', default=[0.01, 0.1, 1.0])
    ap.add_argument('--old', type=float, nargs='*', default=[0.01, 0.1], help='scales at which to run the current item-table code')
    ap.add_argument('--work', default='/tmp/hybrid_xir_bench')
    ap.add_argument('--out', default='reports/bench')
    ap.add_argument('--batches', type=int, default=2000)
    ap.add_argument('--keep', action='store_true', help='keep the synthetic sources and stores in --work')
    ap.add_argument('--plot-only', action='store_true', help='redraw the plot from the CSV in --out')
    a = ap.parse_args(argv)
    if a.plot_only: plot(Path(a.out)/'store_scale.csv', Path(a.out)/'store_scale.png'); return 0
    rows = []
    for sc in sorted(set(a.scales) | set(a.old)):
        w = Path(a.work)/f'scale-{sc:g}'
        shutil.rmtree(w, ignore_errors=True)
        src = w/'hub'/'unicamp-dl'/'mmarco'
        t0 = time.time(); n = write_synthetic_mmarco(src, sc); gen = time.time() - t0
        if sc in a.scales:
            b = child('build', dict(root=str(src), dest=str(w/'store'/'mmarco')))
            n.update(qa_groups=max(1, int(QA_GROUPS * sc)), mfaq_pairs=max(1, int(MFAQ_PAIRS * sc)))
            bi = child('build_items', dict(dest=str(w/'store'), qa=n['qa_groups'], mfaq=n['mfaq_pairs'])) if 'error' not in b else {}
            s = child('sample', dict(dest=str(w/'store'), batches=a.batches)) if 'error' not in b and 'error' not in bi else {}
            rows.append(dict(code='store', scale=sc, **n, generate_s=gen, build_s=b.get('seconds'), build_peak_rss_gb=b.get('peak_rss_gb'),
                             items_build_s=bi.get('seconds'), items_build_peak_rss_gb=bi.get('peak_rss_gb'),
                             error=b.get('error') or bi.get('error'), source_disk_gb=du(src) / 1e9,
                             store_disk_gb=du(w/'store') / 1e9 if (w/'store').exists() else None,
                             batches_per_s=s.get('batches_per_s'), plan_s=s.get('plan_s'), fetch_s=s.get('fetch_s'),
                             sample_peak_rss_gb=s.get('peak_rss_gb'), example=s.get('example')))
            print(json.dumps(rows[-1]), flush=True)
        if sc in a.old:
            o = child('old', dict(mirror=str(w/'hub')))
            rows.append(dict(code='items (current)', scale=sc, **n, build_s=o.get('seconds'), build_peak_rss_gb=o.get('peak_rss_gb'),
                             error=o.get('error'), pairs=o.get('pairs')))
            print(json.dumps(rows[-1]), flush=True)
        if not a.keep: shutil.rmtree(w, ignore_errors=True)
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    import pandas as pd
    pd.DataFrame(rows).to_csv(out/'store_scale.csv', index=False)
    plot(out/'store_scale.csv', out/'store_scale.png')
    return 0


if __name__ == '__main__':
    if len(sys.argv) > 1 and sys.argv[1] == '--child': run_child(sys.argv[2], json.loads(sys.argv[3])); sys.exit(0)
    sys.exit(main())
