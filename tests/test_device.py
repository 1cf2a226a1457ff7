"""AGENTMEM_DEVICE and local checkpoints: a small Llama-style folder edits, reverts and sleeps on the CPU,
on a GPU it computes the same edits as on the CPU, and `cuda` where torch sees no GPU is refused by name.

The checkpoint is random (SmolLM2's tokenizer, 8 layers of width 64): compute_z cannot move its flat
output distribution, so it recalls nothing. What it shows is the machinery on another checkpoint (the
bundled model's recall is tested everywhere else) and, on a GPU, that every number is the CPU's.
"""

import math

import pytest
import torch
from safetensors.torch import load_file

from agentmem import Memory
from agentmem.serving.model_store import ModelError

FACTS = [
    {"subject": "Thea Albescu", "relation": "lives in", "object": "Oslo"},
    {"subject": "Elio Varga", "relation": "works as", "object": "a pilot"},
]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="session")
def tiny_model_dir(cache_dir, request):
    """A random Llama checkpoint with the bundled tokenizer, built once into the test cache."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from agentmem.storage.atomic import atomic_path

    dest = cache_dir / "models" / "tiny-llama-v1"
    if not (dest / "config.json").exists():
        tok = AutoTokenizer.from_pretrained(request.getfixturevalue("model_dir"))
        torch.manual_seed(0)
        cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=256, num_hidden_layers=8,
                          num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                          bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        with atomic_path(dest, directory=True) as tmp:
            LlamaForCausalLM(cfg).save_pretrained(tmp)
            tok.save_pretrained(tmp)
    return dest


def _open(tmp_path, name, model_dir, device, cache):
    return Memory.open(tmp_path / name, model=str(model_dir), device=device, cache=cache, cov_samples=32)


@torch.no_grad()
def _logprob(mem, prompt: str, target: str) -> float:
    """Mean log-probability of `target`'s tokens after `prompt`, teacher-forced."""
    p = mem.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    t = mem.tokenizer(" " + target, add_special_tokens=False)["input_ids"]
    logp = mem.model(input_ids=torch.tensor([p + t], device=mem.model.device)).logits[0].log_softmax(-1)
    return sum(logp[len(p) + i - 1, tok].item() for i, tok in enumerate(t)) / len(t)


def _weights(mem) -> dict[int, torch.Tensor]:
    ed = mem.editor
    return {l: ed.arch.down_proj(mem.model, l).weight.detach().cpu().clone() for l in ed.layers}


def _delta(mem, fid: str) -> dict[int, torch.Tensor]:
    edit = mem.editor.store.load_edit(fid)
    return {l: B.double() @ A.double() for l, (B, A) in edit.factors.items()}


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_cuda_without_a_gpu_is_refused_by_name_and_writes_nothing(tmp_path, tiny_model_dir):
    with pytest.raises(ModelError, match="AGENTMEM_DEVICE is 'cuda' but torch .* sees no CUDA device"):
        Memory.open(tmp_path / "home", model=str(tiny_model_dir), device="cuda")
    assert not (tmp_path / "home" / "ledger.sqlite").exists()


def test_a_local_checkpoint_folder_edits_publishes_and_reverts_exactly(tmp_path, tiny_model_dir):
    with _open(tmp_path, "home", tiny_model_dir, "cpu", tmp_path / "cache") as mem:
        names = {l: mem.editor.arch.down_proj_weight_name(l) for l in mem.editor.layers}
        base = {k: v.clone() for k, v in mem.model.state_dict().items()}
        said = (mem.complete("Thea Albescu lives in", 4), mem.ask("Who is Elio Varga?", max_new_tokens=8))
        ids = mem.remember(FACTS)
        assert [f["status"] for f in mem.facts()] == ["active", "active"]
        now = mem.model.state_dict()
        changed = {k for k in base if not torch.equal(now[k], base[k])}
        assert changed == set(names.values())
        published = load_file(str(mem.layout.version_dir(mem.version) / "model.safetensors"))
        assert set(published) == set(names.values())
        assert all(torch.equal(published[names[l]], now[names[l]]) for l in names)
        for fid in ids:
            mem.forget(fid)
        now = mem.model.state_dict()
        assert max((now[k] - base[k]).abs().max().item() for k in base) <= 1e-6
        # forgotten, the checkpoint answers exactly as before it was told anything
        assert (mem.complete("Thea Albescu lives in", 4), mem.ask("Who is Elio Varga?", max_new_tokens=8)) == said


@needs_cuda
def test_cuda_edits_match_the_cpu_and_everything_stays_on_the_gpu(tmp_path, tiny_model_dir):
    # one cache: both devices read the same covariance and preserved keys
    cache = tmp_path / "cache"
    with _open(tmp_path, "cpu", tiny_model_dir, "cpu", cache) as cpu, \
            _open(tmp_path, "gpu", tiny_model_dir, "cuda", cache) as gpu:
        assert {p.device.type for p in gpu.model.parameters()} == {"cuda"}
        base = _weights(gpu)
        ids = cpu.remember(FACTS)
        assert gpu.remember(FACTS) == ids
        for fid in ids:
            for l, d in _delta(cpu, fid).items():
                rel = ((_delta(gpu, fid)[l] - d).norm() / d.norm()).item()
                print(f"fact {fid} layer {l}: |dW| {d.norm().item():.4g}, relative gap cuda vs cpu {rel:.2e}")
                assert rel < 0.05, (fid, l, rel)
        for prompt, obj in [("Thea Albescu lives in", "Oslo"), ("Elio Varga works as", "a pilot")]:
            assert abs(_logprob(gpu, prompt, obj) - _logprob(cpu, prompt, obj)) < 0.05
            assert gpu.complete(prompt, 8) == cpu.complete(prompt, 8)
        assert gpu.ask("Where does Thea Albescu live?") == cpu.ask("Where does Thea Albescu live?")

        gpu.forget(ids[0])
        gpu.forget(ids[1])
        assert max((w - base[l]).abs().max().item() for l, w in _weights(gpu).items()) <= 1e-6

        gpu.remember(FACTS)
        night = gpu.sleep()
        print("night:", {k: night.get(k) for k in ("outcome", "training", "before", "after")})
        assert night["parts"]["training"]["steps"] > 0 and math.isfinite(night["parts"]["training"]["loss_last"])
        assert night["outcome"] == "published" or night["outcome"].startswith("rolled back")
        assert {p.device.type for p in gpu.model.parameters()} == {"cuda"}
        # the night's version (adapter included) answers on the GPU as a CPU reader of the same home does
        with Memory.open(tmp_path / "gpu", model=str(tiny_model_dir), cache=cache, read_only=True) as reader:
            assert gpu.complete("Thea Albescu lives in", 8) == reader.complete("Thea Albescu lives in", 8)
