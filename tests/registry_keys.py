"""The built-in registry's keys in order (tests that list them all import this): the first
six as they were, then the MoE families' entries in the order issue 10 gives them."""

KEYS = ["nano", "mistral-7b-instruct", "mixtral-8x7b-instruct", "mixtral-8x22b",
        "mixtral-8x22b-instruct", "qwen3-30b-a3b-instruct",
        "qwen3-next-80b-a3b-instruct", "gpt-oss-20b", "gpt-oss-120b", "glm-4.5-air",
        "deepseek-v2-lite-chat", "olmoe-1b-7b-instruct", "granite-3.1-3b-a800m-instruct",
        "phi-3.5-moe-instruct", "qwen1.5-moe-a2.7b-chat"]
BEFORE_FAMILIES = KEYS[:6]
