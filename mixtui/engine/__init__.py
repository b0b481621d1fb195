"""The engine: a worker process that owns MLX, loads a model and streams tokens with routing."""
