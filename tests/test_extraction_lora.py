"""The extraction-adapter benchmark end to end on the real bundled model: trained once into its folder, then
reused, and scored alone and beside the rules (a one-step adapter: this checks the path, not the quality)."""

import json

from typer.testing import CliRunner

from agentmem.__main__ import app


def test_the_adapter_is_trained_once_then_reused_and_scored_alone_and_beside_the_rules(tmp_path, model_dir):
    data = tmp_path / "two.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in [
        {"id": "a", "category": "self", "user_id": "u1", "messages": [{"role": "user", "content": "I live in Oslo."}],
         "expected": [{"subject": "User u1", "relation": "lives in", "object": "Oslo"}]},
        {"id": "b", "category": "questions", "user_id": "u1", "messages": [{"role": "user", "content": "Why?"}],
         "expected": []}]))
    adapter, out = tmp_path / "adapter", tmp_path / "out.json"
    args = ["eval", "extraction-lora", "--adapter", str(adapter), "--dataset", str(data), "--model", str(model_dir),
            "--examples", "16", "--out", str(out)]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    result = json.loads(out.read_text())
    assert (adapter / "adapter_config.json").exists()
    assert result["training"]["examples"] == 16 and result["training"]["steps"] == 1
    for name in ("lora", "both"):
        assert result[name]["overall"]["snippets"] == 2 and set(result[name]["categories"]) == {"self", "questions"}
    assert result["both"]["overall"]["tp"] == 1  # the rules' fact stays whatever the adapter says
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and json.loads(out.read_text())["training"] is None


def test_a_missing_dataset_is_a_one_line_error(tmp_path):
    result = CliRunner().invoke(app, ["eval", "extraction-lora", "--adapter", str(tmp_path / "a"),
                                      "--dataset", str(tmp_path / "none.jsonl")])
    assert result.exit_code != 0 and "not found" in result.output
