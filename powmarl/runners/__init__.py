"""Runners: the compiled, seed-vmapped training loop and evaluation."""
