__version__ = "0.1.0"

# The names a notebook user imports, from `hybrid_xir` itself (`from hybrid_xir import Encoder, run_eval`). They load
# lazily, so that `import hybrid_xir` (and `hybrid-xir --version`) stays fast: each module imports torch and friends.
_API = {
    'HybridXirError': 'core', 'DataError': 'core', 'ModelError': 'core',
    'load_lareqa': 'data', 'default_data_dir': 'data',
    'Encoder': 'encode', 'evaluate_lareqa': 'evaluate', 'HybridBatchSampler': 'sampler',
    'TrainConfig': 'registry', 'get_config': 'registry', 'resolve_model': 'registry', 'run_dir': 'registry',
    'EvalParams': 'params', 'TrainParams': 'params', 'AugmentParams': 'params', 'RetrievalParams': 'params', 'ReportsParams': 'params',
    'training_items': 'train_data', 'config_items': 'training_set', 'run_augment': 'training_set',
    'ensure_trained': 'train', 'run_train': 'train', 'run_eval': 'reports', 'run_retrieval_eval': 'benchmarks',
    'run_grid': 'grid', 'run_reports': 'aggregate', 'load_paper': 'paper', 'build_hub_mirror': 'standins',
}
__all__ = ['__version__', *_API]

def __getattr__(name):
    if name in _API:
        import importlib
        return getattr(importlib.import_module(f'.{_API[name]}', __name__), name)
    raise AttributeError(f"module 'hybrid_xir' has no attribute {name!r}")

def __dir__(): return __all__
