"""A home is bound to the base model its memory was written into: the first process binds it, a process with
another model's weights is refused with a line naming both, the same weights in another folder or with another
config are the same model, and a reader binds nothing."""

import shutil
import threading

import pytest

from agentmem.storage.base_model import OtherModel, bind
from agentmem.storage.cache import fingerprint, weights_fingerprint
from agentmem.storage.layout import Layout
from agentmem.storage.ledger import Ledger


def checkpoint(folder, weights: bytes, config: str = '{"model_type": "llama"}'):
    """A stand-in checkpoint folder: the fingerprints read files, not tensors."""
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(weights)
    (folder / "config.json").write_text(config)
    return folder


@pytest.fixture
def ledger(tmp_path):
    ledger = Ledger.open(Layout(tmp_path / "home"))
    yield ledger
    ledger.close()


def test_the_first_model_binds_the_home_and_another_is_refused_naming_both(ledger, tmp_path):
    first = checkpoint(tmp_path / "smol", b"weights of the first model")
    other = checkpoint(tmp_path / "tuned", b"weights of a fine-tuned one")
    assert ledger.base_model() is None
    bind(ledger, first)
    bind(ledger, first)  # the same model again: nothing to say
    with pytest.raises(OtherModel) as refused:
        bind(ledger, other)
    msg = str(refused.value)
    assert "\n" not in msg and str(first) in msg and str(other) in msg and "agentmem export" in msg
    assert ledger.base_model() == {"fingerprint": weights_fingerprint(first), "model": str(first)}


def test_the_same_weights_copied_or_with_another_config_are_the_same_model(ledger, tmp_path):
    first = checkpoint(tmp_path / "a", b"the same weights", '{"transformers_version": "5.19.0"}')
    bind(ledger, first)
    moved = tmp_path / "elsewhere"
    shutil.copytree(first, moved)
    (moved / "config.json").write_text('{"transformers_version": "5.20.1"}')
    bind(ledger, moved)
    # the covariance's key still sees the config: a cache of derived tensors, not the home's identity
    assert fingerprint(moved) != fingerprint(first) and weights_fingerprint(moved) == weights_fingerprint(first)


def test_a_reader_binds_nothing_and_is_still_refused_another_model(ledger, tmp_path):
    first = checkpoint(tmp_path / "a", b"first")
    other = checkpoint(tmp_path / "b", b"second")
    bind(ledger, first, read_only=True)
    assert ledger.base_model() is None
    bind(ledger, other)
    with pytest.raises(OtherModel):
        bind(ledger, first, read_only=True)


def test_two_processes_binding_a_new_home_at_once_agree_on_one_model(tmp_path):
    models = [checkpoint(tmp_path / f"m{i}", f"model {i}".encode()) for i in range(2)]
    ledgers = [Ledger.open(Layout(tmp_path / "home")) for _ in models]
    outcome: dict[int, str] = {}
    start = threading.Barrier(2)

    def open_with(i):
        start.wait()
        try:
            bind(ledgers[i], models[i])
            outcome[i] = "bound"
        except OtherModel:
            outcome[i] = "refused"

    threads = [threading.Thread(target=open_with, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for ledger in ledgers:
        ledger.close()
    assert sorted(outcome.values()) == ["bound", "refused"]


def test_a_fingerprint_memo_of_the_older_form_is_hashed_again(tmp_path):
    folder = checkpoint(tmp_path / "m", b"weights")
    full, weights = fingerprint(folder), weights_fingerprint(folder)
    memo = folder / ".agentmem-fingerprint"
    stamp = memo.read_text().split("\n")[0]
    memo.write_text(f"{stamp}\n{full}\n")  # written before the weights' own hash existed
    assert weights_fingerprint(folder) == weights and fingerprint(folder) == full
