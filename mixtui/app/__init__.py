"""The application layer both front ends use: the loader policy, the chat controller,
settings, conversations and traces."""
