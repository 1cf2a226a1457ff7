"""Schema-constrained decoding for the embedded engine: an OpenAI `response_format` as a grammar (xgrammar,
what vLLM uses too) that masks every token the JSON would not allow, so the answer always parses."""

from __future__ import annotations

import json
from collections import OrderedDict


class StructuredOutputs:
    """Compiled grammars for one tokenizer, the most recently used kept."""

    def __init__(self, tokenizer, vocab_size: int, keep: int = 16):
        self.tokenizer, self.vocab_size, self.keep = tokenizer, vocab_size, keep
        self._compiler = None
        self._compiled: OrderedDict[str, object] = OrderedDict()

    def processor(self, response_format: dict | None):
        """A fresh transformers logits processor for `response_format` (one per generation), or None for text."""
        kind = (response_format or {}).get("type", "text")
        if kind == "text":
            return None
        import xgrammar as xgr

        key = json.dumps(response_format, sort_keys=True)
        if key not in self._compiled:
            if self._compiler is None:
                info = xgr.TokenizerInfo.from_huggingface(self.tokenizer, vocab_size=self.vocab_size)
                self._compiler = xgr.GrammarCompiler(info)
            if kind == "json_object":
                self._compiled[key] = self._compiler.compile_builtin_json_grammar()
            else:
                try:
                    # compact JSON: free whitespace lets a small model spend its tokens on newlines
                    self._compiled[key] = self._compiler.compile_json_schema(
                        response_format["json_schema"]["schema"], any_whitespace=False)
                except (RuntimeError, ValueError, TypeError) as e:
                    raise ValueError(f"response_format.json_schema.schema is not a schema this server can follow: "
                                     f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
            while len(self._compiled) > self.keep:
                self._compiled.popitem(last=False)
        self._compiled.move_to_end(key)
        return xgr.contrib.hf.LogitsProcessor(self._compiled[key])
