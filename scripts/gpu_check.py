"""The paper recipe's GPU check (issue 17, part 5): one short script for one CUDA GPU, no network.

    python scripts/gpu_check.py            # on the GPU machine: writes reports/gpu/gpu_check.json (about 5 minutes)
    python scripts/gpu_check.py --tiny --out /tmp/x   # the same code path on a CPU in seconds (the tests run this)

It measures, on a randomly initialised model of XLM-R base's shape (the embedded model's XLM-R vocabulary; nothing
comes from the hub):
- the paper recipe's training step (hybrid batches of 100, 256 tokens, bf16 on a GPU, AdamW, in-batch negatives plus
  one hard negative), through the package's own trainer: steps/s, examples/s, peak GPU memory;
- one evaluation pass (encoding texts of XQuAD-R's size);
and from those, with the preflight's plan of reports/grid_paper.toml (`hybrid_xir.preflight.preflight_plan`: steps per
trained model, cells), the GPU-hours of the whole recipe; the preflight's FLOPs estimate (`gpu_hour_estimate`, every
assumption written beside it) stands next to it, and gives the translation terms this script cannot measure offline.
"""
import argparse, json, platform, sys, tempfile, time
from pathlib import Path

PAPER_GRID = Path(__file__).resolve().parent.parent/'reports'/'grid_paper.toml'


def synthetic_items(n_groups, langs, q_words, p_words, seed=0):
    "Parallel training items of paper-like lengths (random words), `n_groups` groups in every language of `langs`."
    import numpy as np, pandas as pd
    rng = np.random.default_rng(seed)
    vocab = [f'w{i}' for i in range(5000)]
    rows = []
    for g in range(n_groups):
        q, p, n = (' '.join(rng.choice(vocab, k)) for k in (q_words, p_words, p_words))
        rows += [dict(dataset='synthetic', group=f's:{g}', lang=l, query=f'{l} {q}', positive=f'{l} {p}', negatives=[f'{l} {n}'])
                 for l in langs]
    return pd.DataFrame(rows)


def recipe_plan(grid=PAPER_GRID):
    """The recipe's cells and FLOPs estimate from the package's own preflight (`hybrid_xir.preflight`): the plan at Table 9
    sizes (no source is read here, so every size comes from Table 9 and `MMARCO_QUERIES`) and `gpu_hour_estimate`'s terms."""
    import pandas as pd
    from hybrid_xir.preflight import preflight_plan, gpu_hour_estimate, GPU_ASSUMPTIONS
    plan = preflight_plan(grid, pd.DataFrame(columns=['source', 'status', 'detail', 'size']))
    return plan, gpu_hour_estimate(grid, plan), GPU_ASSUMPTIONS


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--tiny', action='store_true', help='a tiny model and a few steps (CPU smoke run of the same path)')
    ap.add_argument('--steps', type=int, default=None, help='timed training steps (default 60; tiny: 3)')
    ap.add_argument('--out', default='reports/gpu', help='directory of gpu_check.json')
    a = ap.parse_args(argv)
    import torch
    from hybrid_xir.registry import get_config
    from hybrid_xir.train import build_trainer, _StepTimer
    from hybrid_xir.standins import make_xlmr_standin
    from hybrid_xir.encode import Encoder
    cuda = torch.cuda.is_available()
    shape = dict(hidden=32, layers=2, heads=2) if a.tiny else dict(hidden=768, layers=12, heads=12, intermediate=3072)
    batch, seq = (8, 32) if a.tiny else (100, 256)
    steps, warm = (a.steps or (3 if a.tiny else 60)), (1 if a.tiny else 5)
    res = dict(device=torch.cuda.get_device_name(0) if cuda else platform.processor() or 'cpu', cuda=cuda, tiny=a.tiny,
               torch=torch.__version__, model=('tiny ' if a.tiny else '') + 'XLM-R-base-shaped, randomly initialised',
               batch_size=batch, max_seq_length=seq, bf16=cuda)
    with tempfile.TemporaryDirectory() as tmp:
        model = make_xlmr_standin(Path(tmp)/'xlmr', **shape)
        items = synthetic_items(max(4 * batch, 64), ('en', 'ar', 'zh', 'de', 'es', 'ru', 'hi'), 10, 90 if not a.tiny else 12)
        cfg = get_config('hybrid', base_model=str(model), batch_size=batch, max_seq_length=seq, bf16=cuda, max_steps=steps + warm,
                         freeze_embeddings=False, query_prefix='Query: ', passage_prefix='Passage: ', val_frac=0.2)
        timer = _StepTimer()
        if cuda: torch.cuda.reset_peak_memory_stats()
        tr = build_trainer(cfg, items, Path(tmp)/'ck', callbacks=[timer], timing_only=True)
        tr.train()
        dt = timer.t[-1] - timer.t[warm - 1]
        res['train'] = dict(timed_steps=steps, seconds=dt, steps_per_s=steps / dt, examples_per_s=steps * batch / dt,
                            peak_gpu_memory_gb=torch.cuda.max_memory_allocated() / 2**30 if cuda else None)
        del tr
        n = 256 if a.tiny else 20_000
        texts = [' '.join(items['positive'].iat[i % len(items)].split()[: 12 + i % 40]) for i in range(n)]
        enc = Encoder(str(model), cache=False, progress=False, max_seq_length=seq)
        t0 = time.perf_counter(); enc.encode(texts, 'passage'); de = time.perf_counter() - t0
        res['eval'] = dict(texts=n, seconds=de, texts_per_s=n / de)
    # the estimate: the preflight's plan of the grid (steps per trained model, cells) at the measured rates; its FLOPs
    # estimate beside it. Translation (NLLB) is not measured here (no NLLB weights offline): the FLOPs terms give it.
    plan, est, assumptions = recipe_plan()
    trained = plan[plan.steps.notna()].drop_duplicates('variant')
    steps_model = float(trained.steps.iloc[0])
    lareqa = {ds: int(((plan.kind == 'lareqa') & plan.cell.str.startswith(ds + '/')).sum()) for ds in assumptions['lareqa_texts']}
    eval_texts = sum(n * lareqa[ds] for ds, n in assumptions['lareqa_texts'].items())
    train_h = steps_model / res['train']['steps_per_s'] / 3600 if not a.tiny else None
    eval_h = eval_texts / res['eval']['texts_per_s'] / 3600 if not a.tiny else None
    res['estimate'] = dict(
        how='measured step and encoding rates above x the preflight plan of reports/grid_paper.toml; an estimate for the '
            'full recipe, not a measurement of it',
        trained_models=len(trained), steps_per_trained_model=steps_model, lareqa_cells=lareqa, lareqa_texts=eval_texts,
        gpu_hours_per_trained_model=train_h, gpu_hours_training=train_h * len(trained) if train_h else None,
        gpu_hours_lareqa_evaluation=eval_h,
        not_measured={t: h for t, h in zip(est.term, est.hours) if t == 'evaluation MIRACL' or 'NLLB' in t},
        gpu_hours_grid=(train_h * len(trained) + eval_h + float(est[(est.term == 'evaluation MIRACL') | est.term.str.contains('NLLB')].hours.sum()))
                       if not a.tiny else None)
    res['flops_estimate'] = dict(how='estimate from FLOPs (not measured): hybrid_xir.preflight.gpu_hour_estimate',
                                 terms=est.to_dict('records'), gpu_hours_grid=float(est.hours.sum()),
                                 assumptions={k: v for k, v in assumptions.items()})
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    (out/'gpu_check.json').write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
