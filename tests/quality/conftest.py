"""Quality tests run on the built zoo (``make test-quality``, after ``tiger zoo build``).

They are not part of ``pytest tests`` (the library tests build tiny models of their own); with
``TIGER_QUALITY=1`` a missing or stale zoo is a failure, never a skip."""
import os

import pytest


@pytest.fixture(scope="session")
def settings():
    from tigerlib.config import get_settings

    return get_settings()


@pytest.fixture(scope="session")
def world(settings):
    from tigerlib.data.world_store import load_world

    return load_world(settings.data_dir, settings.world_config())


@pytest.fixture(scope="session")
def zoo(settings, world):
    """The built zoo's models, loaded once (fails with the fix when one is missing)."""
    from tigerlib.zoo import load_dual_encoder, load_judge, load_lmm, load_visual_tokenizer

    assert os.environ.get("TIGER_QUALITY") == "1"
    return {"lmm": load_lmm(settings), "visual_tokenizer": load_visual_tokenizer(settings), "dual_encoder": load_dual_encoder(settings), "judge": load_judge(settings)}
