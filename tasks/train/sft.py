"""Training stage: TRL's SFTTrainer on the selected trajectories, loss on assistant tokens only.

Observations (tool results) and prompts are masked: the chat template marks assistant turns with
``{% generation %}``, which TRL turns into the loss mask. The result is a checkpoint artifact that
the next round collects with.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from storage import ArtifactStore
from storage.schemas import Trajectory
from storage.store import read_rows
from tasks.llm.chat import MaskError, tokenize_for_training
from tasks.llm.hardware import default_device, precision_name
from tasks.stage import Inputs, Stage


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_steps: int = Field(48, ge=1, le=1_000_000, description="Optimizer steps.")
    batch_size: int = Field(2, ge=1, le=4096, description="Sequences per step (per device).")
    gradient_accumulation_steps: int = Field(1, ge=1, le=1024)
    learning_rate: float = Field(2e-4, gt=0, le=1.0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    max_length: int = Field(2048, ge=64, le=1_000_000, description="Longer conversations are truncated.")
    seed: int = 0


def assistant_only_loss(model, inputs: dict, num_items_in_batch=None):
    """Next-token loss computed from the output layer at supervised positions only.

    Agent trajectories are mostly prompt and tool observations, which are masked anyway; projecting
    every position onto the 49k-token vocabulary (and the per-token entropy TRL logs) is most of a
    CPU step's time. Projecting only the assistant positions gives the same loss, about 3x faster.
    """
    import torch.nn.functional as F

    labels = inputs["labels"]
    hidden = model.get_decoder()(
        input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask")
    ).last_hidden_state
    targets = labels[:, 1:]
    supervised = targets != -100
    logits = model.get_output_embeddings()(hidden[:, :-1][supervised])
    loss = F.cross_entropy(logits.float(), targets[supervised], reduction="sum")
    count = num_items_in_batch if num_items_in_batch is not None else supervised.sum()
    return loss / count


def training_in_bf16(device: str) -> bool:
    """Mixed precision (bf16 matmuls, fp32 weights and optimizer) where bf16 runs natively.

    The precision follows :func:`tasks.llm.hardware.precision_name`, so ``TRAILFORGE_PRECISION=fp32``
    pins training to fp32 as well; GPUs without bf16 train in fp32 (fp16 would need loss scaling).
    """
    return precision_name(device) == "bf16"


def _trainer_class():
    from trl import SFTTrainer

    class AssistantPositionsTrainer(SFTTrainer):
        """TRL's SFT trainer with :func:`assistant_only_loss` (and without per-token entropy metrics)."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            # Accelerate's mixed precision wraps only ``model.forward``, which this loss bypasses.
            with self.accelerator.autocast():
                loss = assistant_only_loss(model, inputs, num_items_in_batch)
            return (loss, None) if return_outputs else loss

    return AssistantPositionsTrainer


def sft_dataset(trajectories: list[Trajectory], tokenizer):
    """Token ids and assistant masks, rendered by :mod:`tasks.llm.chat` exactly as prompts are.

    TRL takes a tokenised dataset as it is; each example's mask is checked on the way (no
    observation or prompt trained on, at least one supervised token), and a bad one names its
    trajectory.
    """
    from datasets import Dataset

    rows = []
    for t in trajectories:
        try:
            example = tokenize_for_training(tokenizer, json.loads(t.messages_json))
        except MaskError as error:
            raise MaskError(f"trajectory {t.id} (task {t.task_id}): {error}") from None
        rows.append({"input_ids": example.input_ids, "assistant_masks": example.assistant_masks})
    return Dataset.from_list(rows)


def train_sft(model_dir: str, trajectories: list[Trajectory], config: TrainConfig, out: Path) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig

    if not trajectories:
        raise ValueError("the selection is empty: nothing to train on (check the selection thresholds)")
    device = default_device()
    on_cpu = device == "cpu"
    bf16 = training_in_bf16(device)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    with tempfile.TemporaryDirectory() as scratch:
        args = SFTConfig(
            output_dir=scratch,
            max_steps=config.max_steps,
            per_device_train_batch_size=config.batch_size,
            gradient_accumulation_steps=config.gradient_accumulation_steps,
            learning_rate=config.learning_rate,
            warmup_steps=math.ceil(config.warmup_ratio * config.max_steps),
            lr_scheduler_type="cosine",
            max_length=config.max_length,
            # The dataset arrives tokenised with its checked assistant masks (see sft_dataset); TRL turns
            # them into labels itself, and its own flag is only for datasets it renders.
            assistant_only_loss=False,
            use_cpu=on_cpu,
            bf16=bf16,
            activation_checkpointing=False,
            save_strategy="no",
            logging_steps=1,
            report_to="none",
            seed=config.seed,
            dataloader_num_workers=0,
            disable_tqdm=False,
        )
        trainer = _trainer_class()(
            model=model,
            args=args,
            train_dataset=sft_dataset(trajectories, tokenizer),
            processing_class=tokenizer,
        )
        result = trainer.train()
        trainer.save_model(str(out))
    tokenizer.save_pretrained(out)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    metrics = {
        "train_loss": result.training_loss,
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "steps": result.global_step,
        "examples": len(trajectories),
        "bf16": bf16,
        "device": device,
    }
    (out / "train_metrics.json").write_text(json.dumps(metrics, indent=1))
    return metrics


class PromptFormatMismatch(ValueError):
    """Trajectories rendered with another template or protocol than the policy's: training on them
    would teach the policy a format it is never prompted with."""


def check_prompt_format(trajectories: list[Trajectory], model_dir: str) -> None:
    """Refuse a training set whose prompts were not rendered the way this policy renders them."""
    from transformers import AutoTokenizer

    from tasks.agent.protocol import protocol_digest, template_digest

    policy_template = template_digest(AutoTokenizer.from_pretrained(model_dir).chat_template)
    expected = protocol_digest()
    wrong = [
        t
        for t in trajectories
        if t.protocol_digest != expected
        or (t.template_digest is not None and t.template_digest != policy_template)
    ]
    if wrong:
        example = wrong[0]
        raise PromptFormatMismatch(
            f"{len(wrong)} of {len(trajectories)} trajectories were rendered differently from this "
            f"policy's prompts (e.g. {example.id}: protocol {example.protocol_digest or 'unrecorded'} vs "
            f"{expected}, template {example.template_digest} vs {policy_template}); collect them again "
            "with this policy's template, or train a policy that uses theirs"
        )


def produce_checkpoint(work: Path, config: TrainConfig, inputs: Inputs, store: ArtifactStore) -> None:
    trajectories = read_rows(inputs["selection"], Trajectory, name="trajectories")
    check_prompt_format(trajectories, inputs["model"].uri)
    train_sft(inputs["model"].uri, trajectories, config, work)


STAGE = Stage(
    name="train",
    kind="checkpoint",
    produce=produce_checkpoint,
    config_model=TrainConfig,
    environment=lambda config, inputs: {"precision": precision_name(default_device())},
)
