"""Model pieces of a VLM: vision tower, token compressors, projector, LLM wiring."""
