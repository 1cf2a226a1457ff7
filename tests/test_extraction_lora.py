"""The extraction-adapter benchmark end to end on the real bundled model: trained once into its folder, then
reused, and scored alone and beside the rules (a one-step adapter on one message: this checks the path, not the
quality, which `agentmem eval extraction-lora` measures)."""

import json

from typer.testing import CliRunner

from agentmem.__main__ import app


def test_the_adapter_is_trained_once_then_reused_and_scored_alone_and_beside_the_rules(tmp_path, model_dir):
    data, empty = tmp_path / "one.jsonl", tmp_path / "none.jsonl"
    data.write_text(json.dumps(
        {"id": "a", "category": "self", "user_id": "u1", "messages": [{"role": "user", "content": "I live in Oslo."}],
         "expected": [{"subject": "User u1", "relation": "lives in", "object": "Oslo"}]}))
    empty.write_text("")
    adapter, out = tmp_path / "adapter", tmp_path / "out.json"

    def run(dataset):
        result = CliRunner().invoke(app, ["eval", "extraction-lora", "--adapter", str(adapter), "--dataset",
                                          str(dataset), "--model", str(model_dir), "--examples", "16", "--out", str(out)])
        assert result.exit_code == 0, result.output
        return json.loads(out.read_text())

    first = run(data)
    assert (adapter / "adapter_config.json").exists()
    assert first["training"]["examples"] == 16 and first["training"]["steps"] == 1
    for name in ("lora", "both"):
        assert first[name]["overall"]["snippets"] == 1 and set(first[name]["categories"]) == {"self"}
    assert first["both"]["overall"]["tp"] == 1  # the rules' fact stays whatever the adapter says
    assert run(empty)["training"] is None  # the adapter in the folder is used, not trained again


def test_a_missing_dataset_is_a_one_line_error(tmp_path):
    result = CliRunner().invoke(app, ["eval", "extraction-lora", "--adapter", str(tmp_path / "a"),
                                      "--dataset", str(tmp_path / "none.jsonl")])
    assert result.exit_code != 0 and "not found" in result.output
