"""Turn a conversation into token ids: the chat template for chat models, plain text for base."""

from __future__ import annotations

from typing import Any

from jinja2 import TemplateError

from mixtui.engine.messages import Generate
from mixtui.errors import UsageError


def _template_messages(request: Generate, merge_system: bool) -> list[dict[str, str]]:
    messages = [{"role": r, "content": c} for r, c in request.messages]
    if request.system:
        if merge_system and messages and messages[0]["role"] == "user":
            messages[0] = {"role": "user",
                           "content": f"{request.system}\n\n{messages[0]['content']}"}
        elif not merge_system:
            messages.insert(0, {"role": "system", "content": request.system})
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
    try:
        return list(tokenizer.apply_chat_template(
            _template_messages(request, merge_system=False), add_generation_prompt=True))
    except TemplateError as exc:  # raised by the template itself, e.g. for a refused role
        if not request.system:
            raise UsageError(f"The model's chat template refused this conversation ({exc}); "
                             "turns must alternate user and assistant.") from None
    # Some templates (Mistral's, Mixtral v0.1's) accept no system role: merge it into the
    # first user turn, as their model cards advise.
    return list(tokenizer.apply_chat_template(
        _template_messages(request, merge_system=True), add_generation_prompt=True))
