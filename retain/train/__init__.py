"""Explicit training loops: pretraining of the base model (`pretrain`) and the optimizer pieces they share."""
