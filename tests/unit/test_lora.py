"""Wake edits as a LoRA on the down projections: exact when stacked, exact when compacted within the rank
their sum really has, and truncation reports what it left out; the adapter folder is what peft reads."""

import json

import torch
from safetensors.torch import load_file

from agentmem.edit.arch import Architecture
from agentmem.edit.lora import compacted, stacked
from agentmem.edit.memit import Edit
from agentmem.storage.lora_adapter import padded_rank, write_user_lora

D, DFF = 12, 40
gen = torch.Generator().manual_seed(0)


def _edit(rank: int, layers=(3, 4)) -> Edit:
    return Edit({l: (torch.randn(D, rank, generator=gen), torch.randn(rank, DFF, generator=gen)) for l in layers},
                {l: torch.randn(DFF, rank, generator=gen) for l in layers})


def _dense(edits, layer):
    return sum(s * e.factors[layer][0].double() @ e.factors[layer][1].double() for e, s in edits)


def test_stacked_edits_are_their_scaled_sum_and_a_dissolved_edit_drops_out():
    edits = [(_edit(3), 1.0), (_edit(2), 0.5), (_edit(4), 0.0)]
    lora = stacked(edits)
    assert set(lora) == {3, 4} and lora[3].rank == 5  # the scale-0 edit adds no columns
    for l in lora:
        torch.testing.assert_close(lora[l].B @ lora[l].A, _dense(edits, l))


def test_compaction_within_the_true_rank_is_exact():
    a = _edit(3)
    # the same change told three times over: rank 9 stacked, rank 3 in truth
    edits = [(a, 0.5), (a, 0.25), (a, 0.25)]
    lora = compacted(stacked(edits)[3], max_rank=4)
    assert lora.rank == 3 and lora.lost < 1e-9
    torch.testing.assert_close(lora.B @ lora.A, _dense(edits, 3))


def test_truncation_keeps_the_largest_directions_and_says_what_it_lost():
    edits = [(_edit(6), 1.0), (_edit(6), 1.0)]
    dense = _dense(edits, 3)
    lora = compacted(stacked(edits)[3], max_rank=4)
    S = torch.linalg.svdvals(dense)
    expected = (S[4:].square().sum() / S.square().sum()).sqrt().item()
    assert lora.rank == 4 and abs(lora.lost - expected) < 1e-9 and lora.lost > 0.05
    assert abs((dense - lora.B @ lora.A).norm().item() / dense.norm().item() - lora.lost) < 1e-9


def test_the_adapter_folder_holds_each_layer_padded_to_an_engine_rank(tmp_path):
    lora = stacked([(_edit(3), 1.0), (_edit(2), 1.0)])
    rank = write_user_lora(tmp_path, lora, Architecture("llama"), tmp_path / "base")
    assert rank == padded_rank(5) == 8
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["r"] == config["lora_alpha"] == 8 and config["target_modules"] == ["down_proj"]
    assert config["layers_to_transform"] == [3, 4]
    weights = load_file(str(tmp_path / "adapter_model.safetensors"))
    for l in (3, 4):
        A = weights[f"base_model.model.model.layers.{l}.mlp.down_proj.lora_A.weight"]
        B = weights[f"base_model.model.model.layers.{l}.mlp.down_proj.lora_B.weight"]
        assert A.shape == (8, DFF) and B.shape == (D, 8)
        torch.testing.assert_close((B @ A).double(), lora[l].B @ lora[l].A, atol=1e-5, rtol=1e-5)
