import os

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def _data_cache(tmp_path_factory, monkeypatch):
    """Each test gets its own data cache (swapformer.data.cache), never the user's ~/.cache/swapformer."""
    monkeypatch.setenv("SWAPFORMER_CACHE_DIR", str(tmp_path_factory.mktemp("swapformer-cache")))
