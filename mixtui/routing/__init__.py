"""Routing capture (which experts each token chose at every MoE layer) and its trace format."""
