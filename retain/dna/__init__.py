"""HyenaDNA at CPU scale: a synthetic genome with character tokens (`genome`), pretraining with sequence-length
warm-up, fine-tuning and soft prompts on a long-range task (`train`, `retain dna`)."""
