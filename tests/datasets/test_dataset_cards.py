"""Dataset cards (datasets/<name>.toml) parse, and adapters use their published counts."""

from __future__ import annotations

import numpy as np
import pytest

from neuroalign.datasets import dataset_card
from neuroalign.datasets._cards import CARDS_DIR, published

CARDS = ["nsd", "algonauts2023", "bold5000", "things-eeg2", "things-meg", "things-fmri", "simulated"]


@pytest.mark.parametrize("name", CARDS)
def test_card_sections(name):
    card = dataset_card(name)
    assert card["name"] == name
    for section in ("source", "terms", "layout", "published"):
        assert card[section], section
    assert "download" in card["source"]


def test_no_stray_cards():
    assert sorted(p.stem for p in CARDS_DIR.glob("*.toml")) == sorted(CARDS)


def test_nsd_published_counts():
    assert "never implicit" in dataset_card("nsd")["source"]["download"]
    assert dataset_card("nsd")["terms"]["redistribution"] is False
    assert published("nsd", "sessions", 3) == 32
    trials = np.array(dataset_card("nsd")["published"]["trials"])
    np.testing.assert_array_equal(trials, np.array(published("nsd", "sessions")) * 750)
    assert published("nsd", "volume_func1pt8mm", 1) == [81, 104, 83]
    assert published("nsd", "missing-key", default="x") == "x"
    assert published("nope", "sessions", 1) is None


def test_bold5000_volume_warning(tmp_path):
    from adapter_fixtures import write_bold5000

    from neuroalign.datasets import PublishedCountWarning, load_bold5000

    w = write_bold5000(tmp_path / "b")
    with pytest.warns(PublishedCountWarning, match=r"the volume shape \(X, Y, Z\) is \[4, 5, 3\], but the published value for CSI1 is \[71, 89, 72\]"):
        load_bold5000(w["root"], 1)
