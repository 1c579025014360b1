"""Shared by the hand-written repeat tests (``test_repeats_descriptors.py``, ``test_repeats_identity.py``):
the times, a city key, the repeat configuration and the matter features of one written complaint."""
import pytest

from envleads import repeats as R

DAY_MS = 86_400_000
T0 = 1_700_000_000_000
CITY = "320100"  # a city key: its complaints are known to be in one city


@pytest.fixture(scope="module")
def config():
    return R.load_repeat_config()


def feats(config, title, text, types=("air",), region=None):
    return R.matter_features(text, title, [], region, list(types), config)
