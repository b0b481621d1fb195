"""Weights from the Hugging Face Hub: plan, download (cancellable), verify and repair.

Everything goes through huggingface_hub into the standard cache, so `hf cache ls` and other
tools see and reuse the files. Nothing here imports MLX.
"""
