"""Turn a conversation into token ids: the chat template for chat models, plain text for base."""

from __future__ import annotations

from typing import Any

from jinja2 import TemplateError

from mixtui.engine.messages import Generate
from mixtui.errors import UsageError


def _template_messages(request: Generate, merge_system: bool) -> list[dict[str, str]]:
    messages = [{"role": r, "content": c} for r, c in request.messages]
    if request.system and not merge_system:
        messages.insert(0, {"role": "system", "content": request.system})
    elif request.system:
        first_user = next((i for i, m in enumerate(messages) if m["role"] == "user"), None)
        if first_user is None:
            raise UsageError("The conversation has no user turn to carry the system prompt; "
                             "start it with a user message.")
        content = messages[first_user]["content"]
        messages[first_user] = {"role": "user", "content": f"{request.system}\n\n{content}"}
    return messages


def build_prompt_tokens(tokenizer: Any, request: Generate) -> list[int]:
    """Token ids of the whole conversation, ending where the model should go on."""
    if not request.messages:
        raise UsageError("There is nothing to answer; give a prompt.")
    use_template = not request.completion and getattr(tokenizer, "chat_template", None)
    if not use_template:
        text = "".join(content for _, content in request.messages)
        if request.system:
            text = f"{request.system}\n\n{text}"
        if not text:
            raise UsageError("The prompt is empty; give some text to continue.")
        return list(tokenizer.encode(text))
    # Some templates (Mistral's, Mixtral v0.1's) accept no system role: then the system
    # prompt is merged into the first user turn, as their model cards advise.
    attempts = (False, True) if request.system else (False,)
    for merge_system in attempts:
        try:
            return list(tokenizer.apply_chat_template(
                _template_messages(request, merge_system), add_generation_prompt=True))
        except TemplateError as exc:  # raised by the template itself, e.g. for a refused role
            refusal = exc
    raise UsageError(f"The model's chat template refused this conversation ({refusal}); "
                     "turns must alternate user and assistant.")
