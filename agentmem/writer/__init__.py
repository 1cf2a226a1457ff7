"""The writer: the queue from the hook to the editor, one writer at a time, and the editor that keeps ledger, store and weights in step."""
