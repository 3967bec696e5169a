"""Multitask training of leaky rate RNNs (Yang et al. 2019, Nature Neuroscience)."""
