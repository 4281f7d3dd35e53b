"""Flax networks: the shared GRU agent and the mixers."""
