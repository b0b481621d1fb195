"""The Textual UI: a view on the engine process; nothing here imports MLX."""
