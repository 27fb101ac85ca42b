"""Grokking studies (Wang et al. 2024, "Grokked Transformers are Implicit Reasoners"): the two synthetic
tasks, composition and comparison, built as the reference code builds them (`retain.grok.data`)."""
