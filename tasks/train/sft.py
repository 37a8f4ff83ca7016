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
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from storage import ArtifactStore
from storage.schemas import Selection, Trajectory
from storage.store import read_rows
from tasks.llm.chat import MaskError, tokenize_for_training
from tasks.llm.hardware import default_device, precision_name
from tasks.stage_spec import Inputs, Stage


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_steps: int = Field(48, ge=1, le=1_000_000, description="Optimizer steps.")
    batch_size: int = Field(2, ge=1, le=4096, description="Sequences per step (per device).")
    gradient_accumulation_steps: int = Field(1, ge=1, le=1024)
    learning_rate: float = Field(2e-4, gt=0, le=1.0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = Field(
        "cosine", description="Learning-rate schedule after warm-up (transformers' scheduler names)."
    )
    max_length: int = Field(2048, ge=64, le=1_000_000, description="Longer conversations are truncated.")
    seed: int = 0
    method: Literal["full", "lora"] = Field(
        "full",
        description="full: every weight is trained. lora: low-rank adapters (peft) are trained and merged "
        "into the weights when saved, so the checkpoint is a plain model every backend loads.",
    )
    lora_r: int = Field(16, ge=1, le=4096, description="LoRA: rank of the adapters.")
    lora_alpha: float = Field(32, gt=0, le=1_000_000, description="LoRA: the update is scaled by alpha / r.")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="LoRA: dropout on the adapters' input.")
    lora_target_modules: list[str] = Field(
        default_factory=lambda: ["all-linear"],
        description="LoRA: module names to adapt (e.g. q_proj,v_proj); all-linear: every linear layer but "
        "the output layer.",
    )

    def for_id(self) -> TrainConfig:
        """Full training uses no LoRA setting, so those never split one checkpoint across two ids."""
        if self.method == "lora":
            return self
        defaults = {
            name: type(self).model_fields[name].get_default(call_default_factory=True) for name in LORA_FIELDS
        }
        return self.model_copy(update=defaults)


LORA_FIELDS = ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules")


def assistant_only_loss(model, inputs: dict, num_items_in_batch=None):
    """Next-token loss computed from the output layer at supervised positions only.

    Agent trajectories are mostly prompt and tool observations, which are masked anyway; projecting
    every position onto the 49k-token vocabulary (and the per-token entropy TRL logs) is most of a
    CPU step's time. Projecting only the assistant positions gives the same loss, about 3x faster.
    """
    import torch.nn.functional as F

    labels = inputs["labels"]
    # use_cache=False: a training forward has no later step to reuse keys and values for.
    hidden = model.get_decoder()(
        input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"), use_cache=False
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

    TRL takes a tokenised dataset as it is; every example's mask is checked on the way (no
    observation or prompt trained on, at least one supervised token). All of them are checked before
    any is refused, so one error names every bad trajectory and a user fixes the set in one pass.
    """
    from datasets import Dataset

    rows, bad = [], []
    for t in trajectories:
        try:
            example = tokenize_for_training(tokenizer, json.loads(t.messages_json))
        except MaskError as error:
            bad.append(f"trajectory {t.id} (task {t.task_id}): {error}")
            continue
        rows.append({"input_ids": example.input_ids, "assistant_masks": example.assistant_masks})
    if bad:
        raise MaskError(
            f"{len(bad)} of {len(trajectories)} training examples have a bad loss mask:\n  "
            + "\n  ".join(bad)
        )
    return Dataset.from_list(rows)


def lora_config(config: TrainConfig):
    from peft import LoraConfig

    modules = config.lora_target_modules
    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        # peft takes the shorthand as a string, never inside a list
        target_modules="all-linear" if modules == ["all-linear"] else modules,
        task_type="CAUSAL_LM",
    )


def sft_args(config: TrainConfig, output_dir: str):
    """TRL's config for a run of ``config`` on this host (CPU or GPU, bf16 where it is native)."""
    from trl import SFTConfig

    device = default_device()
    return SFTConfig(
        output_dir=output_dir,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate,
        warmup_steps=math.ceil(config.warmup_ratio * config.max_steps),
        lr_scheduler_type=config.lr_scheduler,
        max_length=config.max_length,
        # The dataset arrives tokenised with its checked assistant masks (see sft_dataset); TRL turns
        # them into labels itself, and its own flag is only for datasets it renders.
        assistant_only_loss=False,
        use_cpu=device == "cpu",
        bf16=training_in_bf16(device),
        activation_checkpointing=False,
        save_strategy="no",
        logging_steps=1,
        report_to="none",
        seed=config.seed,
        dataloader_num_workers=0,
        disable_tqdm=False,
    )


def sft_trainer(model_dir: str, tokenizer, dataset, config: TrainConfig, output_dir: str):
    """The trainer :func:`train_sft` runs, built and not started, so a benchmark can time its steps."""
    from transformers import AutoModelForCausalLM

    return _trainer_class()(
        model=AutoModelForCausalLM.from_pretrained(model_dir),
        args=sft_args(config, output_dir),
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora_config(config) if config.method == "lora" else None,
    )


def save_checkpoint(trainer, config: TrainConfig, out: Path) -> None:
    """Save plain weights: LoRA adapters are merged in, so every backend loads the checkpoint as is."""
    if config.method == "lora":
        trainer.model.merge_and_unload().save_pretrained(out)
    else:
        trainer.save_model(str(out))


def parameter_counts(model) -> dict[str, int]:
    return {
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def train_sft(model_dir: str, trajectories: list[Trajectory], config: TrainConfig, out: Path) -> dict:
    from transformers import AutoTokenizer

    if not trajectories:
        raise ValueError("the selection is empty: nothing to train on (check the selection thresholds)")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    dataset = sft_dataset(trajectories, tokenizer)
    with tempfile.TemporaryDirectory() as scratch:
        trainer = sft_trainer(model_dir, tokenizer, dataset, config, scratch)
        counts = parameter_counts(trainer.model)
        result = trainer.train()
        save_checkpoint(trainer, config, out)
    tokenizer.save_pretrained(out)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    device = default_device()
    metrics = {
        "train_loss": result.training_loss,
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "steps": result.global_step,
        "examples": len(trajectories),
        # every example's loss mask was checked (see sft_dataset); a bad one stops training
        "mask_checked": len(dataset),
        "supervised_tokens": sum(sum(mask) for mask in dataset["assistant_masks"]),
        "method": config.method,
        **counts,
        "bf16": training_in_bf16(device),
        "device": device,
    }
    if config.method == "lora":
        metrics["lora"] = config.model_dump(include=set(LORA_FIELDS))
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


def training_set(selections) -> list[Trajectory]:
    """The trajectories of one or more selections, each repeated as often as its selection row says.

    Several selections are how rounds carry earlier data forward (the cold-start demonstrations and
    every earlier round's kept trajectories); a trajectory in more than one counts once, with the
    most copies any of them gives it.
    """
    copies: dict[str, int] = {}
    trajectories: dict[str, Trajectory] = {}
    for ref in selections if isinstance(selections, list) else [selections]:
        for row in read_rows(ref, Selection):
            copies[row.trajectory_id] = max(copies.get(row.trajectory_id, 0), row.copies)
        for t in read_rows(ref, Trajectory, name="trajectories"):
            trajectories.setdefault(t.id, t)
    return [t for tid in sorted(trajectories) for t in [trajectories[tid]] * copies.get(tid, 1)]


def produce_checkpoint(work: Path, config: TrainConfig, inputs: Inputs, store: ArtifactStore) -> None:
    trajectories = training_set(inputs["selection"])
    check_prompt_format(trajectories, inputs["model"].uri)
    train_sft(inputs["model"].uri, trajectories, config, work)


STAGE = Stage(
    name="train",
    kind="checkpoint",
    produce=produce_checkpoint,
    config_model=TrainConfig,
    environment=lambda config, inputs: {"precision": precision_name(default_device())},
)
