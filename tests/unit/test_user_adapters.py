"""A user's memory as an adapter, on synthetic tensors: written, read back, merged with another adapter, and
added into a model's weights and taken out again, all exactly."""

import json

import pytest
import torch

from agentmem.edit.lora import LayerLora
from agentmem.serving.scope_overlay import ScopeOverlay
from agentmem.storage.layout import ADAPTER_FILES, Layout
from agentmem.storage.atomic import save_tensors
from agentmem.storage.lora_adapter import lora_deltas, lora_pairs, merge_adapters, merged_weights, write_lora


class Arch:
    layers_attr, down_proj_attr = "model.layers", "mlp.down_proj"


def pair(d_out, d_in, r, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(d_out, r, generator=g, dtype=torch.float64), torch.randn(r, d_in, generator=g, dtype=torch.float64)


def test_an_adapter_read_back_gives_the_changes_it_was_written_with_whatever_its_alpha(tmp_path):
    down = pair(6, 10, 3, 0)
    write_lora(tmp_path / "a", {"model.layers.1.mlp.down_proj": down}, tmp_path)
    got = dict(lora_deltas(tmp_path / "a"))
    assert list(got) == ["model.layers.1.mlp.down_proj.weight"]
    torch.testing.assert_close(got["model.layers.1.mlp.down_proj.weight"], (down[0] @ down[1]).float())
    # a trained adapter's own scale (alpha / r, or alpha / sqrt(r) with rsLoRA) is applied
    config_file = tmp_path / "a" / ADAPTER_FILES[0]
    config = json.loads(config_file.read_text())
    del config["rank_pattern"], config["alpha_pattern"]  # as peft writes a trained adapter's
    config_file.write_text(json.dumps({**config, "lora_alpha": 16, "use_rslora": True}))
    scale = 16 / config["r"] ** 0.5
    torch.testing.assert_close(dict(lora_deltas(tmp_path / "a"))["model.layers.1.mlp.down_proj.weight"],
                               (scale * down[0] @ down[1]).float())


def test_merged_adapters_add_what_each_adds_in_one_adapter_of_one_rank(tmp_path):
    q, down, down2 = pair(6, 6, 8, 1), pair(6, 10, 3, 2), pair(6, 10, 5, 3)
    write_lora(tmp_path / "night", {"model.layers.1.self_attn.q_proj": q, "model.layers.2.mlp.down_proj": down2},
               tmp_path)
    write_lora(tmp_path / "user", {"model.layers.2.mlp.down_proj": down}, tmp_path)
    rank = merge_adapters([tmp_path / "user", tmp_path / "night"], tmp_path / "both", tmp_path)
    assert rank == 8  # the down projection's 3 + 5 columns, padded to an engine's rank
    config = json.loads((tmp_path / "both" / ADAPTER_FILES[0]).read_text())
    assert config["target_modules"] == ["down_proj", "q_proj"] and config["r"] == config["lora_alpha"] == 8
    got = dict(lora_deltas(tmp_path / "both"))
    torch.testing.assert_close(got["model.layers.1.self_attn.q_proj.weight"], (q[0] @ q[1]).float())
    torch.testing.assert_close(got["model.layers.2.mlp.down_proj.weight"],
                               (down[0] @ down[1] + down2[0] @ down2[1]).float())


def test_a_shared_adapter_merged_into_the_weights_adds_its_changes_and_the_next_one_puts_the_old_back(tmp_path):
    q, up, down = torch.randn(6, 6), torch.randn(8, 6), torch.randn(6, 8)
    save_tensors({"model.layers.1.self_attn.q_proj.weight": q, "model.layers.1.mlp.up_proj.weight": up,
                  "model.layers.1.mlp.down_proj.weight": down}, tmp_path / "model.safetensors")
    dq, dup = pair(6, 6, 2, 4), pair(8, 6, 2, 5)
    write_lora(tmp_path / "night1", {"model.layers.1.self_attn.q_proj": dq, "model.layers.1.mlp.up_proj": dup}, tmp_path)
    write_lora(tmp_path / "night2", {"model.layers.1.self_attn.q_proj": dq}, tmp_path)
    edited = down + 1.0  # the version's own change of a tensor the adapter does not touch
    first = merged_weights(lora_pairs(tmp_path / "night1"), tmp_path, {"model.layers.1.mlp.down_proj.weight": edited})
    assert set(first) == {"model.layers.1.self_attn.q_proj.weight", "model.layers.1.mlp.up_proj.weight"}
    torch.testing.assert_close(first["model.layers.1.self_attn.q_proj.weight"], q + (dq[0] @ dq[1]).float())
    torch.testing.assert_close(first["model.layers.1.mlp.up_proj.weight"], up + (dup[0] @ dup[1]).float())
    # the next night's adapter no longer touches up_proj: it goes back to the base, q_proj carries the new change
    second = merged_weights(lora_pairs(tmp_path / "night2"), tmp_path, {}, restore=first)
    torch.testing.assert_close(second["model.layers.1.mlp.up_proj.weight"], up)
    torch.testing.assert_close(second["model.layers.1.self_attn.q_proj.weight"], q + (dq[0] @ dq[1]).float())
    # an adapter on a tensor the version also changes is added to the version's tensor, not the base's
    write_lora(tmp_path / "night3", {"model.layers.1.mlp.down_proj": pair(6, 8, 2, 6)}, tmp_path)
    third = merged_weights(lora_pairs(tmp_path / "night3"), tmp_path, {"model.layers.1.mlp.down_proj.weight": edited})
    torch.testing.assert_close(third["model.layers.1.mlp.down_proj.weight"],
                               edited + dict(lora_deltas(tmp_path / "night3"))["model.layers.1.mlp.down_proj.weight"])
    assert merged_weights({}, tmp_path, {}, restore=["model.layers.1.mlp.up_proj.weight"]).keys() == {
        "model.layers.1.mlp.up_proj.weight"}


def test_a_users_memory_is_added_and_taken_out_exactly_however_often_users_alternate():
    net = torch.nn.Linear(10, 6, bias=False)
    shared = net.weight.detach().clone()
    deltas = {u: {"weight": torch.randn(6, 10)} for u in ("u1", "u2")}
    overlay = ScopeOverlay(lambda name: net.get_parameter(name))
    calls = []

    def load(u):
        calls.append(u)
        return deltas[u].items()

    for _ in range(20):
        for u in ("u1", "u1", "u2"):
            overlay.hold(u, lambda u=u: load(u))
            torch.testing.assert_close(net.weight.detach(), shared + deltas[u]["weight"])
        overlay.hold(None, None)
        assert torch.equal(net.weight.detach(), shared)
    assert calls.count("u1") == 20  # a user held already is not loaded again


def test_user_adapter_names_differ_for_every_version_and_user_and_stay_one_path_component():
    names = {Layout.user_adapter_name(u, n) for u in ("u1", "u2", "../etc", "a b") for n in (1, 1, 2)}
    assert len(names) == 12 and all("/" not in n and " " not in n for n in names)
    assert Layout.user_key("u1") == Layout.user_key("u1") != Layout.user_key("u2")


# peft warns of the pairs the adapter leaves out (q_proj of layer 2, down_proj of layer 0): their B is zero
@pytest.mark.filterwarnings("ignore:Found missing adapter keys:UserWarning")
def test_an_adapter_of_mixed_ranks_loads_in_peft_as_the_changes_it_was_written_with(tmp_path):
    from peft import PeftModel
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=24, num_hidden_layers=3,
                                         num_attention_heads=2, num_key_value_heads=2))
    # a night's rank-8 attention change beside a rank-40 wake edit: each kind keeps its own rank
    pairs = {"model.layers.0.self_attn.q_proj": pair(16, 16, 8, 4), "model.layers.2.mlp.down_proj": pair(16, 24, 40, 5)}
    assert write_lora(tmp_path / "mixed", {m: (B.float(), A.float()) for m, (B, A) in pairs.items()}, tmp_path) == 64
    config = json.loads((tmp_path / "mixed" / ADAPTER_FILES[0]).read_text())
    assert config["rank_pattern"] == {"down_proj": 64, "q_proj": 8} and config["layers_to_transform"] == [0, 2]
    ids = torch.tensor([[1, 5, 7, 9]])
    with torch.no_grad():
        expected = {n: p.detach().clone() for n, p in model.named_parameters()}
        for m, (B, A) in pairs.items():
            model.get_parameter(m + ".weight").add_((B @ A).float())
        want = model(ids).logits
        for n, p in model.named_parameters():
            p.copy_(expected[n])
        got = PeftModel.from_pretrained(model, str(tmp_path / "mixed")).eval()(ids).logits
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    # vLLM reads the same ranks and scales from it
    from vllm.lora.peft_helper import PEFTHelper

    helper = PEFTHelper.from_local_dir(str(tmp_path / "mixed"), None)
    assert helper.get_rank_and_scaling("model.layers.2.mlp.down_proj") == (64, 1.0)
    assert helper.get_rank_and_scaling("model.layers.0.self_attn.q_proj") == (8, 1.0)
