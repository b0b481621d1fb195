"""MoE families: how each architecture's config maps to a geometry and where its routing is
computed."""
