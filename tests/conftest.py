"Test configuration: hermetic cache, the project's shared data beside the checkout, no network."
import os
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent/'shared'/'data'

# one cache for the whole run (the model is converted once); CI points it at the clone
os.environ.setdefault('HYBRID_XIR_CACHE', str(ROOT/'.cache'))
if not os.environ.get('HYBRID_XIR_DATA') and SHARED.exists():
    os.environ['HYBRID_XIR_DATA'] = str(SHARED)
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')

def _has_data():
    d = os.environ.get('HYBRID_XIR_DATA')
    return bool(d) and (Path(d)/'lareqa'/'xquad-r'/'en.json').exists()

needs_data = pytest.mark.skipif(not _has_data(), reason='LAReQA data not found (set HYBRID_XIR_DATA)')

@pytest.fixture(scope='session')
def xquad():
    from hybrid_xir.data import load_lareqa
    return load_lareqa('xquad-r')

@pytest.fixture(scope='session')
def mlqa():
    from hybrid_xir.data import load_lareqa
    return load_lareqa('mlqa-r')

@pytest.fixture(scope='session')
def encoder():
    from hybrid_xir.encode import Encoder
    return Encoder('pretrained', progress=False)
