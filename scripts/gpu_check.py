"""The paper recipe's GPU check (issue 17, part 5): one short script for one CUDA GPU, no network.

    python scripts/gpu_check.py            # on the GPU machine: writes reports/gpu/gpu_check.json (about 5 minutes)
    python scripts/gpu_check.py --tiny --out /tmp/x   # the same code path on a CPU in seconds (the tests run this)

It measures, on a randomly initialised model of XLM-R base's shape (the embedded model's XLM-R vocabulary; nothing
comes from the hub):
- the paper recipe's training step (hybrid batches of 100, 256 tokens, bf16 on a GPU, AdamW, in-batch negatives plus
  one hard negative), through the package's own trainer: steps/s, examples/s, peak GPU memory;
- one evaluation pass (encoding texts of XQuAD-R's size);
and from those the GPU-hours of the whole recipe (reports/grid_paper.toml), with every assumption written beside it.
"""
import argparse, json, platform, sys, tempfile, time
from pathlib import Path

# sizes of the paper recipe at full scale (reports/paper/table9_training_data.csv; mMARCO: unique training queries of
# the small triples file, one group each, in 7 languages): groups per source and languages
RECIPE = dict(mmarco=(400_000, 7), qa_sets=(1469 + 33298 + 59496 + 113535 + 135557, 9), mrtydi=(3547, 1), mfaq=(3_567_659, 1))
EVAL_TEXTS = dict(xquad_r=2 * 13_090, mlqa_r=2 * 60_000, miracl_15=40_000_000)   # questions + candidates; MIRACL: passages of the 15 corpora (approx.)
GRID = dict(trained_models=4 * 3, eval_models=4 * 3 + 2)    # xx, xy, hybrid, hybrid_bt x 3 seeds; + backbone and multilingual-e5


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


def flops_estimate(tflops=110.0, gen_tflops=15.0):
    """GPU-hours of the whole recipe from FLOPs, before any measurement: XLM-R base has ~86M non-embedding parameters;
    training costs 6 x params x tokens, encoding 2 x params x tokens, NLLB-600M generation ~2 x 0.6G x tokens.
    `tflops`: sustained bf16 throughput of an A100/H100-class GPU at ~35% utilisation of its dense peak;
    `gen_tflops`: the same for autoregressive generation, which is memory-bound (~5%)."""
    p = 86e6
    tok_step = 100 * (16 + 2 * 128)                               # batch 100: query ~16 tokens, positive + negative ~128 each
    steps = sum(g for g, _ in RECIPE.values()) / 100               # one epoch of the hybrid sampler
    train_h = 6 * p * tok_step * steps / (tflops * 1e12) / 3600
    eval_h = 2 * p * sum(EVAL_TEXTS.values()) * 128 / (tflops * 1e12) / 3600
    tt_tokens = RECIPE['qa_sets'][0] * 2 * 8 * 2 * 60              # questions + passages, 8 target languages, in + out, ~60 tokens
    bt_tokens = sum(g * l for g, l in RECIPE.values()) * 2 * 2 * 20   # every question, out and back, in + out, ~20 tokens
    tt_h, bt_h = (2 * 0.6e9 * t / (gen_tflops * 1e12) / 3600 for t in (tt_tokens, bt_tokens))
    return dict(how='estimate from FLOPs (not measured)', sustained_tflops=tflops, generation_tflops=gen_tflops,
                gpu_hours_per_trained_model=train_h, gpu_hours_eval_per_model=eval_h, gpu_hours_translate_train=tt_h,
                gpu_hours_back_translation=bt_h,
                gpu_hours_grid=GRID['trained_models'] * train_h + GRID['eval_models'] * eval_h + tt_h + bt_h)


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
    # the estimate: training steps per epoch = groups / batch (the hybrid sampler's epoch); one epoch per trained
    # model (early stopping can only shorten it); evaluation = encoding every evaluation text once per model
    groups = sum(g for g, _ in RECIPE.values())
    steps_epoch = groups / 100
    train_h = steps_epoch / res['train']['steps_per_s'] / 3600 if not a.tiny else None
    eval_h = sum(EVAL_TEXTS.values()) / res['eval']['texts_per_s'] / 3600 if not a.tiny else None
    res['estimate'] = dict(
        how='measured step and encoding rates above x the recipe sizes; an estimate for the full recipe, not a measurement of it',
        recipe_groups=groups, steps_per_epoch_at_batch_100=steps_epoch,
        gpu_hours_per_trained_model=train_h, gpu_hours_eval_per_model=eval_h,
        gpu_hours_grid=(GRID['trained_models'] * train_h + GRID['eval_models'] * eval_h) if not a.tiny else None,
        not_included='NLLB-200 translate-train of the QA sets (~5.5M segments) and back-translation for hybrid_bt: not '
                     'measured here (no NLLB weights offline); at an assumed 100 segments/s per GPU they add ~15 GPU-hours '
                     'and ~55 GPU-hours (10M questions, two directions)',
        assumptions=dict(recipe=RECIPE, eval_texts=EVAL_TEXTS, grid=GRID))
    res['flops_estimate'] = flops_estimate()
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    (out/'gpu_check.json').write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
