from pathlib import Path

import pytest

from greedy_infomax.data import speech_corpus_root
from greedy_infomax.data.roots import gim_data, required_gim_data
from greedy_infomax.errors import GimError


def test_gim_data_expands_home_and_treats_empty_as_unset(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("GIM_DATA", "~/datasets")
    assert gim_data() == tmp_path / "datasets"
    monkeypatch.setenv("GIM_DATA", "")
    assert gim_data() is None
    with pytest.raises(GimError, match=r"STL-10 needs a data root \(the folder holding stl10_binary/\)"):
        required_gim_data("STL-10", "stl10_binary/")


def test_speech_corpus_lives_under_gim_data_else_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("GIM_DATA", str(tmp_path / "data"))
    assert speech_corpus_root() == tmp_path / "data" / "speech-corpus"
    monkeypatch.delenv("GIM_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert speech_corpus_root() == Path(tmp_path, "cache", "greedy-infomax", "speech-corpus")
