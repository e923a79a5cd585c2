import os
from pathlib import Path
import numpy as np, pandas as pd
import pytest
from safetensors.numpy import load_file
from conftest import needs_data
from hybrid_xir.core import ModelError
from hybrid_xir.registry import TrainConfig, get_config
from hybrid_xir.train import train, make_tiny_encoder, pair_dataset, PairSampler
from hybrid_xir.sampler import pair_table

@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    return make_tiny_encoder(tmp_path_factory.mktemp('tiny')/'enc')

@pytest.fixture(scope='module')
def small_items():
    from hybrid_xir.train_data import training_items
    items, _ = training_items('xquad-r', qa_sets=())
    return items[items.group.isin(sorted(items.group.unique())[:120])].reset_index(drop=True)

def _weights(p): return load_file(str(Path(p)/'model.safetensors'))

from transformers import TrainerCallback

class Killed(Exception): pass

class StopAt(TrainerCallback):
    "Simulates a run killed after `step` (its checkpoint written): it dies there, so nothing after the save runs."
    def __init__(self, step): self.step = step
    def on_save(self, args, state, control, **kw):
        if state.global_step >= self.step: raise Killed(state.global_step)
        return control

@pytest.mark.slow
@needs_data
def test_resume_gives_the_same_model(tiny, small_items, tmp_path):
    cfg = TrainConfig(base_model=str(tiny), batch_size=8, max_steps=6, eval_steps=3, max_seq_length=48, val_frac=0.2,
                      patience=0, seed=3)
    full, card = train(cfg, small_items, tmp_path/'full')
    with pytest.raises(Killed): train(cfg, small_items, tmp_path/'killed', callbacks=[StopAt(3)])
    resumed, card2 = train(cfg, small_items, tmp_path/'killed', resume=True)
    assert card2['resumed_from'].endswith('checkpoint-3') and card2['train_steps'] == 6
    a, b = _weights(full), _weights(resumed)
    assert a.keys() == b.keys()
    for k in a: np.testing.assert_allclose(a[k], b[k], atol=1e-6, err_msg=k)
    # the tiny model did learn something: weights moved away from the initial ones
    init = _weights(tiny)
    assert any(not np.allclose(init[k], a[k]) for k in a if k in init)

@pytest.mark.slow
@needs_data
def test_frozen_embeddings_stay_put(tiny, small_items, tmp_path):
    cfg = TrainConfig(base_model=str(tiny), batch_size=8, max_steps=2, eval_steps=2, max_seq_length=48, val_frac=0.2,
                      patience=0, freeze_embeddings=True)
    out, _ = train(cfg, small_items, tmp_path/'f')
    # training truncated to 48 tokens, but the saved model keeps the base model's length (128) for evaluation
    from sentence_transformers import SentenceTransformer
    assert SentenceTransformer(str(tiny)).max_seq_length == SentenceTransformer(str(out)).max_seq_length == 128
    w0, w1 = _weights(tiny), _weights(out)
    key = [k for k in w0 if 'word_embeddings' in k][0]
    assert np.array_equal(w0[key], w1[key])
    assert any(not np.array_equal(w0[k], w1[k]) for k in w0 if 'encoder.layer.0' in k)

def test_pair_dataset_negatives():
    items = pd.DataFrame(dict(dataset='d', group=['a', 'a', 'b'], lang=['en', 'de', 'en'], query=['qa', 'qa-de', 'qb'],
                              positive=['pa', 'pa-de', 'pb'], negatives=[['na'], [], []]))
    pt = pair_table(items)
    ds = pair_dataset(items, pt)
    rows = {(r.qlang, r.plang, r.group): i for i, r in enumerate(pt.itertuples())}
    assert ds[rows[('en', 'en', 'a')]] == dict(anchor='qa', positive='pa', negative='na')
    assert ds[rows[('en', 'de', 'a')]]['positive'] == 'pa-de'
    assert ds[rows[('en', 'en', 'b')]]['negative'] == 'pa'        # no hard negative: another group's positive, same language

def test_configs():
    assert get_config('xx').mode == 'mono' and get_config('xy').mode == 'cross' and get_config('hybrid').alpha == 0.5
    with pytest.raises(ModelError, match="unknown training configuration 'hybird'"): get_config('hybird')
    import pickle
    assert pickle.loads(pickle.dumps(PairSampler([], 'hybrid', 0.5, 0))).tables == {}

@pytest.mark.slow
@needs_data
def test_train_notebook_smoke(tmp_path):
    "papermill runs nbs/train.ipynb with injected parameters (a 2-step run of the real e5-small, seed kept apart)."
    import json, papermill as pm
    from conftest import ROOT
    from hybrid_xir.registry import run_dir
    seed = 987654
    out = tmp_path/'train_out.ipynb'
    try:
        pm.execute_notebook(str(ROOT/'nbs'/'train.ipynb'), str(out), cwd=str(ROOT), progress_bar=False, kernel_name='python3',
                            parameters=dict(model='xy', dataset='mlqa-r', max_steps=2, batch_size=4, max_seq_length=24,
                                            seed=seed, out_dir=str(tmp_path/'rep')))
        rep = tmp_path/'rep'/f'xy@batch_size=4,max_seq_length=24,max_steps=2,seed={seed}-mlqa-r'
        card = json.loads((rep/'card.json').read_text())
        assert card['train_steps'] == 2 and card['config']['mode'] == 'cross' and card['config']['seed'] == seed
        assert (rep/'loss.png').exists()
        # the stored notebook reads cleanly: one final line per stage, no tqdm updates, no avoidable notices
        nb = json.loads(out.read_text())
        text = ''.join(''.join(o.get('text', '')) for c in nb['cells'] for o in c.get('outputs', []) if o.get('output_type') == 'stream')
        assert 'PAD/BOS/EOS' not in text and 'IProgress' not in text and '%|' not in text, text[-2000:]
        assert any(l.startswith('train: 2/2 step (100%) in ') for l in text.splitlines()), text[-2000:]
    finally:
        import shutil; shutil.rmtree(run_dir('xy@max_steps=2,batch_size=4,max_seq_length=24', 'mlqa-r', seed), ignore_errors=True)

def _ddp_worker(rank, world, port, tiny, out):
    import json, tempfile
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    from hybrid_xir.train import build_trainer
    from hybrid_xir.train_data import training_items
    items, _ = training_items('xquad-r', qa_sets=())
    small = items[items.group.isin(sorted(items.group.unique())[:120])].reset_index(drop=True)
    cfg = TrainConfig(base_model=tiny, batch_size=8, max_steps=4, max_seq_length=32, val_frac=0.2, patience=0, seed=5)
    tr = build_trainer(cfg, small, tempfile.mkdtemp(), timing_only=True)
    Path(out, f'{rank}.json').write_text(json.dumps([list(b) for b in tr.get_train_dataloader().batch_sampler][:6]))

@pytest.mark.slow
@needs_data
def test_two_processes_split_each_global_batch(tiny, small_items, tmp_path):
    "Under torch.distributed (gloo, 2 CPU processes) each rank gets half of every global batch of the 1-process run."
    import json, socket, tempfile
    import torch.multiprocessing as mp
    from hybrid_xir.train import build_trainer
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(tiny), str(tmp_path)), nprocs=2)
    r0, r1 = (json.loads((tmp_path/f'{r}.json').read_text()) for r in (0, 1))
    cfg = TrainConfig(base_model=str(tiny), batch_size=8, max_steps=4, max_seq_length=32, val_frac=0.2, patience=0, seed=5)
    single = [list(b) for b in build_trainer(cfg, small_items, tempfile.mkdtemp(), timing_only=True).get_train_dataloader().batch_sampler][:6]
    assert len(r0) == len(r1) == len(single) == 6
    for a, b, g in zip(r0, r1, single): assert len(a) == len(b) == 4 and a + b == g

@pytest.mark.slow
@needs_data
def test_model_card_records_evaluation(tiny, small_items, tmp_path):
    import json
    from hybrid_xir.reports import run_eval
    cfg = TrainConfig(base_model=str(tiny), batch_size=8, max_steps=2, eval_steps=2, max_seq_length=32, val_frac=0.2, patience=0)
    path, _ = train(cfg, small_items, tmp_path/'run')
    ev = run_eval(model=str(path), dataset='mlqa-r', out_dir=str(tmp_path/'rep'), progress=False)
    card = json.loads((path/'hybrid_xir_card.json').read_text())
    assert card['evaluation']['mlqa-r']['multi mAP'] == ev.summary['multi mAP']
    assert card['config']['mode'] == 'hybrid' and card['train_steps'] == 2

_KILLED_SAVE = '''
import os, sys, json, pandas as pd
from transformers import Trainer
from hybrid_xir.registry import TrainConfig
from hybrid_xir.train import train
_orig = Trainer._save_optimizer_and_scheduler
def _killed(self, output_dir):
    if self.state.global_step >= 4: os._exit(9)      # the process dies with checkpoint-4 half-written (weights, no state)
    return _orig(self, output_dir)
Trainer._save_optimizer_and_scheduler = _killed
train(TrainConfig(**json.loads(sys.argv[2])), pd.read_pickle(sys.argv[1]), sys.argv[3])
'''

@pytest.mark.slow
@needs_data
def test_resume_skips_a_checkpoint_killed_while_saving(tiny, small_items, tmp_path):
    import json, subprocess, sys
    kw = dict(base_model=str(tiny), batch_size=8, max_steps=6, eval_steps=2, max_seq_length=48, val_frac=0.2, patience=0, seed=3)
    small_items.to_pickle(tmp_path/'items.pkl')
    r = subprocess.run([sys.executable, '-c', _KILLED_SAVE, str(tmp_path/'items.pkl'), json.dumps(kw), str(tmp_path/'run')],
                       capture_output=True, text=True)
    assert r.returncode == 9, r.stderr[-2000:]
    ck = tmp_path/'run'/'checkpoints'
    assert (ck/'checkpoint-4').is_dir() and not (ck/'checkpoint-4'/'trainer_state.json').exists()   # the half-written one
    cfg = TrainConfig(**kw)
    resumed, card = train(cfg, small_items, tmp_path/'run', resume=True)   # (that resuming reproduces an uninterrupted
    assert card['resumed_from'].endswith('checkpoint-2') and card['train_steps'] == 6   # run is checked above)
    assert (resumed/'model.safetensors').exists() and not ck.exists()     # a finished run keeps its model, not its checkpoints

def test_bad_configurations_fail_at_once():
    from hybrid_xir.registry import parse_variant
    for bad, msg in [('xx@alpha=1.5', 'alpha must be'), ('hybrid@alpha=abc', "alpha='abc'"), ('hybrid@lr=-1', 'lr must be'),
                     ('hybrid@mode=bogus', 'mode must be one of'), ('hybrid@batch_size=0', 'batch_size must be'),
                     ('hybrid@batch_size=2.5', 'batch_size=2.5'), ('hybrid@max_steps=0', 'max_steps'), ('hybrid@seed=x', "seed='x'")]:
        with pytest.raises(ModelError, match=msg): get_config(bad)
        with pytest.raises(ModelError): parse_variant(bad)
    with pytest.raises(ModelError, match='warmup_ratio'): TrainConfig(warmup_ratio=2)
