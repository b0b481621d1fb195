"""Turn a conversation into token ids: the chat template for chat models, plain text for base."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from jinja2 import TemplateError, TemplateSyntaxError

from mixtui.core.errors import UsageError
from mixtui.engine.messages import Generate


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
    return build_prompt(tokenizer, request)[0]


def build_prompt(tokenizer: Any, request: Generate) -> tuple[list[int], bool]:
    """(token ids, whether the system prompt had to be merged into the first user turn)."""
    if not request.messages:
        raise UsageError("There is nothing to answer; give a prompt.")
    use_template = not request.completion and getattr(tokenizer, "chat_template", None)
    if not use_template:
        text = "".join(content for _, content in request.messages)
        if request.system:
            text = f"{request.system}\n\n{text}"
        if not text:
            raise UsageError("The prompt is empty; give some text to continue.")
        return list(tokenizer.encode(text)), False
    # Some templates (Mistral's, Mixtral v0.1's) accept no system role: then the system
    # prompt is merged into the first user turn, as their model cards advise.
    try:
        return _apply(tokenizer, request, merge_system=False), False
    except TemplateError as exc:
        refusal = exc
    if request.system:
        try:
            return _apply(tokenizer, request, merge_system=True), True
        except TemplateError as exc:
            merged_refusal = exc
        try:  # without the system prompt: is it the system prompt the template refuses?
            _apply(tokenizer, replace(request, system=None), merge_system=False)
        except TemplateError as exc:
            refusal = exc
        else:
            raise UsageError(f"The model's chat template refuses a system prompt, both as a "
                             f"turn of its own and merged into the first user turn "
                             f"({_reason(merged_refusal)}); run without a system prompt.")
    roles = [role for role, _ in request.messages]
    if roles != [("user", "assistant")[i % 2] for i in range(len(roles))]:
        raise UsageError(f"The model's chat template refused this conversation "
                         f"({_reason(refusal)}); turns must alternate user and assistant.")
    raise UsageError(f"The model's chat template refused this conversation "
                     f"({_reason(refusal)}) although its turns alternate user and assistant; "
                     "fix the template, or remove it to use the model as a base model.")


def _apply(tokenizer: Any, request: Generate, merge_system: bool) -> list[int]:
    try:
        return list(tokenizer.apply_chat_template(
            _template_messages(request, merge_system), add_generation_prompt=True))
    except TemplateSyntaxError as exc:  # a TemplateError too, but no refusal: a broken template
        raise UsageError(f"The model's chat template is not valid Jinja ({_reason(exc)}); fix "
                         "the template, or remove it to use the model as a base model.") from None


def _reason(exc: TemplateError) -> str:
    """The template's own words: raise_exception('...') or Jinja's message, on one line."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:199] + "…"
