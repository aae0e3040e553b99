"""Simulated devices served over the real protocols, and their physics profiles."""
