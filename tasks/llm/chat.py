"""One way to render a conversation for a local model: the prompt it generates from, and the
tokens and loss mask it is trained on.

Collection and evaluation render prompts, and training tokenises examples, through these two
functions, over the same tokenizer and its chat template. A policy is therefore trained on exactly
the token sequence it is prompted with; a digest of the template travels with every trajectory
(see :mod:`tasks.agent.protocol`), and training refuses trajectories whose digest is not its own.
"""

from __future__ import annotations

from dataclasses import dataclass


def render_prompt(tokenizer, messages: list[dict]) -> str:
    """The text a policy generates its next turn from."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


class MaskError(ValueError):
    """An example whose loss mask would train on what the policy does not write, or on nothing."""


@dataclass(frozen=True)
class TrainingExample:
    input_ids: list[int]
    assistant_masks: list[int]

    @property
    def supervised(self) -> int:
        return sum(self.assistant_masks)


def tokenize_for_training(tokenizer, messages: list[dict]) -> TrainingExample:
    """Token ids of the whole conversation and a mask that is 1 exactly on assistant tokens.

    The mask comes from the template's ``{% generation %}`` markers. It is checked, not trusted:
    every supervised token must lie inside an assistant turn's rendered text, never inside a tool
    observation or a prompt, and at least one token must be supervised.
    """
    rendered = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    example = TrainingExample(list(rendered["input_ids"]), list(rendered["assistant_masks"]))
    check_mask(tokenizer, messages, example)
    return example


def check_mask(tokenizer, messages: list[dict], example: TrainingExample) -> None:
    if example.supervised == 0:
        raise MaskError(
            "no token of this conversation is supervised (no assistant turn, or a template "
            "without {% generation %} markers)"
        )
    supervised_text = tokenizer.decode(
        [t for t, m in zip(example.input_ids, example.assistant_masks, strict=True) if m]
    )
    for message in messages:
        if message["role"] in ("tool", "user", "system") and len(message["content"]) >= 16:
            if message["content"] in supervised_text:
                raise MaskError(
                    f"a {message['role']} message would be trained on as if the policy wrote it: "
                    f"{message['content'][:80]!r}"
                )
