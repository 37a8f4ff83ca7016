"""The oracle policy: replays a task's gold evidence path through the real tools.

It proves each task is solvable with the search environment as built, and it gives demonstrations
for a cold start when no teacher model is at hand. It behaves as a good agent must: it searches for
each hop and reads only what the search returned. If a hop's gold document does not come back, the
oracle does not open it by an id it never saw (that would teach the policy to invent ids): the task
gets no demonstration and a ``GoldNotRetrieved`` failure. Synthesis drops such tasks up front.

Hops found by one query (an entity the question describes by several facts) take one search. A
tool-augmented task ends with a ``calculate`` over the values read, and its answer is what that
result gives, not the stored answer: the demonstration reaches it only through the tool.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from storage import ArtifactStore
from storage.schemas import Failure, Step, Task, Trajectory
from storage.store import write_table
from tasks.agent.environment import ToolConfig, execute_turns, tool_for
from tasks.agent.loop import trajectory_id
from tasks.agent.protocol import ParsedTurn, assistant_message, initial_messages, protocol_digest
from tasks.search.tools import TOOLS_SCHEMA, SearchTool
from tasks.stage_spec import Inputs, Stage
from tasks.synthesis.evidence import fact_sentence, hop_query, load_tasks
from tasks.synthesis.questions import answer_from_calculation

__all__ = ["COLD_START_REASON", "ORACLE", "OracleConfig", "fact_sentence", "hop_query", "oracle_trajectory"]

ORACLE = "oracle"
# The selection reason of a gold-path trajectory given to training (a demonstration or a fallback).
COLD_START_REASON = "cold_start"


class OracleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    split: str = Field("train", description="Which tasks to replay.")
    tools: ToolConfig = Field(default_factory=ToolConfig)


def oracle_trajectory(task: Task, tool: SearchTool, config: ToolConfig) -> tuple[Trajectory | None, bool]:
    """The gold-path trajectory, or None with False when a hop's gold document was not retrieved."""
    messages = initial_messages(task.question)
    steps: list[Step] = []
    known = ""
    retrieved: set[str] = set()
    for i, hop in enumerate(task.hops):
        query = hop_query(hop)
        if i == 0 or query != hop_query(task.hops[i - 1]):
            lead = f"{known} " if known else ""
            thought = f"{lead}Next I look up: {query}."
            turns = [ParsedTurn("search", query, thought, f"<think>{thought}</think>\n")]
            observation = execute_turns(tool, turns, config)[0]
            if observation.fatal:
                return None, False
            retrieved = set(observation.doc_ids)
            _append(messages, steps, turns[0], observation)
            known = ""
        if hop.doc_id not in retrieved:
            return None, False
        known = f"{known} {fact_sentence(hop)}".strip()
    answer = task.answer
    if task.calculation:
        thought = f"{known} I compute {task.calculation}."
        turns = [ParsedTurn("calculate", task.calculation, thought, f"<think>{thought}</think>\n")]
        observation = execute_turns(tool, turns, config)[0]
        if observation.error:
            return None, False
        _append(messages, steps, turns[0], observation)
        answer = answer_from_calculation(float(observation.text), task.choices)
        known = f"The result is {observation.text}."
    if answer != task.answer:
        return None, False
    thought = f"{known} So the answer is {answer}."
    raw = f"<think>{thought}</think>\n<answer>{answer}</answer>"
    messages.append({"role": "assistant", "content": raw})
    steps.append(Step(index=len(steps), thought=thought, action="answer", argument=answer, raw=raw))
    trajectory = Trajectory(
        id=trajectory_id(ORACLE, task.id, 0, 0.0, 0),
        task_id=task.id,
        policy=ORACLE,
        sample_index=0,
        temperature=0.0,
        seed=0,
        messages_json=json.dumps(messages),
        tools_json=json.dumps(TOOLS_SCHEMA),
        steps=steps,
        final_answer=task.answer,
        finished=True,
        protocol_digest=protocol_digest(),
    )
    return trajectory, True


def _append(messages: list[dict], steps: list[Step], turn: ParsedTurn, observation) -> None:
    raw = f"{turn.prefix}<{turn.action}>{turn.argument}</{turn.action}>"
    messages.append(assistant_message(turn, raw))
    messages.append({"role": "tool", "name": turn.action, "content": observation.text})
    steps.append(
        Step(
            index=len(steps),
            thought=turn.thought,
            action=turn.action,
            argument=turn.argument,
            observation=observation.text,
            retrieved_doc_ids=observation.doc_ids,
            raw=raw,
        )
    )


def produce_oracle(work: Path, config: OracleConfig, inputs: Inputs, store: ArtifactStore) -> None:
    tool = tool_for(inputs["index"], config.tools)
    trajectories, failures = [], []
    for task in load_tasks(inputs["tasks"], config.split):
        trajectory, found_all = oracle_trajectory(task, tool, config.tools)
        if found_all:
            trajectories.append(trajectory)
            continue
        failures.append(
            Failure(
                stage="collect-oracle",
                item_id=task.id,
                error_class="GoldNotRetrieved",
                message=f"a gold document was not in the top {config.tools.top_k} for its hop's query; "
                "no demonstration (the oracle opens only documents it has seen)",
            )
        )
    write_table(work, trajectories)
    if failures:
        write_table(work, failures, name="failures")


STAGE = Stage(name="collect-oracle", kind="trajectories", produce=produce_oracle, config_model=OracleConfig)
