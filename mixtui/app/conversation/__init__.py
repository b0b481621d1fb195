"""A conversation with its routing: `Conversation` (conversation.py) and its parts."""

from mixtui.app.conversation.codec import FORMAT, VERSION, ConversationError
from mixtui.app.conversation.conversation import Conversation, TokenInfo, TokenRouting
from mixtui.app.conversation.routing import NO_EXPERT

__all__ = ["FORMAT", "NO_EXPERT", "VERSION", "Conversation", "ConversationError", "TokenInfo",
           "TokenRouting"]
