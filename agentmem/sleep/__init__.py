"""Sleep: each night the day's facts are consolidated into a LoRA adapter and their MEMIT edits dissolve as they graduate."""
