"""Base models: the default Llama-style model by named size, any local HF causal LM by path, generation."""
