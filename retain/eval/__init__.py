"""Scoring: exact match of answers, continual-learning metrics, and question answering with a model."""
