"""lmindexer: semantic IDs learned by a language model, on Ray."""
