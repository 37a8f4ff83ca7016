"""The batched ReAct loop: every active trajectory advances together, one generation per turn.

The loop is written against a small ``Policy`` protocol (render messages, generate a batch), so
the transformers backend, a served model or a scripted test policy all drive the same code.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from storage.schemas import Failure, Step, Task, Trajectory
from tasks.agent.environment import ToolConfig, execute_turns
from tasks.agent.protocol import (
    INVALID_ACTION_FEEDBACK,
    STOP_STRINGS,
    assistant_message,
    initial_messages,
    parse_turn,
)
from tasks.llm.hf import Generation
from tasks.search.tools import TOOLS_SCHEMA, SearchTool


class Policy(Protocol):
    def render(self, messages: list[dict]) -> str: ...

    def count_tokens(self, text: str) -> int: ...

    def generate(
        self, prompts: list[str], *, max_new_tokens: int, temperature: float, seed: int, stop: tuple[str, ...]
    ) -> list[Generation]: ...


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_turns: int = Field(4, ge=1, le=100, description="Turns before an unanswered trajectory is cut off.")
    max_new_tokens: int = Field(64, ge=8, le=8192, description="Tokens generated per turn at most.")
    max_prompt_tokens: int = Field(
        3072, ge=256, le=1_000_000, description="Context budget; a longer prompt ends the trajectory."
    )
    tools: ToolConfig = Field(default_factory=ToolConfig)


@dataclass
class _Rollout:
    task: Task
    sample_index: int
    messages: list[dict]
    steps: list[Step] = field(default_factory=list)
    answer: str | None = None
    done: bool = False
    generated_tokens: int = 0


def trajectory_id(policy: str, task_id: str, sample_index: int, temperature: float, seed: int) -> str:
    key = f"{policy}|{task_id}|{sample_index}|{temperature}|{seed}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def run_agent(
    policy: Policy,
    tool: SearchTool,
    tasks: list[Task],
    *,
    config: AgentConfig,
    samples_per_task: int = 1,
    temperature: float = 0.0,
    seed: int = 0,
    policy_name: str = "policy",
    stage: str = "collect",
    progress: str | None = None,
) -> tuple[list[Trajectory], list[Failure]]:
    rollouts = [_Rollout(t, i, initial_messages(t.question)) for t in tasks for i in range(samples_per_task)]
    failures: list[Failure] = []
    bar = tqdm(total=config.max_turns, desc=progress, unit="turn", leave=False, disable=progress is None)
    for turn_index in range(config.max_turns):
        active = [r for r in rollouts if not r.done]
        if not active:
            break
        prompts = []
        for rollout in list(active):
            prompt = policy.render(rollout.messages)
            if policy.count_tokens(prompt) > config.max_prompt_tokens:
                rollout.done = True  # context budget spent: the trajectory ends unanswered
                active.remove(rollout)
            else:
                prompts.append(prompt)
        if not active:
            break
        generations = policy.generate(
            prompts,
            max_new_tokens=config.max_new_tokens,
            temperature=temperature,
            seed=seed * 1009 + turn_index,
            stop=STOP_STRINGS,
        )
        for rollout, generation in zip(list(active), generations, strict=True):
            if generation.error is not None:
                # The backend gave up on this prompt: the trajectory ends, and the failure is kept.
                failures.append(
                    Failure(
                        stage=stage,
                        item_id=f"{rollout.task.id}#{rollout.sample_index}#{len(rollout.steps)}",
                        error_class="GenerationError",
                        message=generation.error,
                        raw_output=generation.text,
                    )
                )
                rollout.done = True
        generations = [g for g in generations if g.error is None]
        active = [r for r in active if not r.done]
        turns = [parse_turn(g.text) for g in generations]
        observations = execute_turns(tool, turns, config.tools)
        for rollout, generation, turn, observation in zip(
            active, generations, turns, observations, strict=True
        ):
            rollout.generated_tokens += generation.tokens
            rollout.messages.append(assistant_message(turn, generation.text))
            step = Step(
                index=len(rollout.steps),
                thought=turn.thought,
                action=turn.action,
                argument=turn.argument,
                raw=generation.text,
                tokens=generation.tokens,
                latency_s=generation.latency_s / max(len(active), 1),
            )
            if turn.action == "answer":
                rollout.answer = turn.argument
                rollout.done = True
            elif turn.action == "invalid":
                step.observation = INVALID_ACTION_FEEDBACK
                rollout.messages.append({"role": "user", "content": INVALID_ACTION_FEEDBACK})
            else:
                step.observation = observation.text
                step.retrieved_doc_ids = observation.doc_ids
                rollout.messages.append({"role": "tool", "name": turn.action, "content": observation.text})
                if observation.error:
                    failures.append(
                        Failure(
                            stage=stage,
                            item_id=f"{rollout.task.id}#{rollout.sample_index}#{step.index}",
                            error_class=observation.error,
                            message=observation.text,
                            raw_output=generation.text,
                        )
                    )
            rollout.steps.append(step)
        bar.update(1)
    bar.close()
    tools_json = json.dumps(TOOLS_SCHEMA)
    trajectories = [
        Trajectory(
            id=trajectory_id(policy_name, r.task.id, r.sample_index, temperature, seed),
            task_id=r.task.id,
            policy=policy_name,
            sample_index=r.sample_index,
            temperature=temperature,
            seed=seed,
            messages_json=json.dumps(r.messages),
            tools_json=tools_json,
            steps=r.steps,
            final_answer=r.answer,
            finished=r.answer is not None,
            generated_tokens=r.generated_tokens,
        )
        for r in rollouts
    ]
    return trajectories, failures
