"""The oracle policy: replays a task's gold evidence path through the real tools.

It proves each task is solvable with the search environment as built (the gold document must come
back for the hop's query, or the oracle has to open it by id), and it gives demonstrations for a
cold start when no teacher model is at hand.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from storage import ArtifactStore
from storage.schemas import Failure, Hop, Step, Task, Trajectory
from storage.store import write_table
from tasks.agent.environment import ToolConfig, execute_turns, tool_for
from tasks.agent.loop import trajectory_id
from tasks.agent.protocol import ParsedTurn, assistant_message, initial_messages
from tasks.corpus.world import RELATIONS
from tasks.search.tools import TOOLS_SCHEMA, SearchTool
from tasks.stage import Inputs, Stage
from tasks.synthesis.two_hop import load_tasks

ORACLE = "oracle"


class OracleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    split: str = Field("train", description="Which tasks to replay.")
    tools: ToolConfig = Field(default_factory=ToolConfig)


def fact_sentence(hop: Hop) -> str:
    return RELATIONS[hop.relation][2].format(s=hop.subject_name, o=hop.object_name)


def hop_query(hop: Hop) -> str:
    return f"{hop.subject_name} {RELATIONS[hop.relation][3]}"


def oracle_trajectory(task: Task, tool: SearchTool, config: ToolConfig) -> tuple[Trajectory, bool]:
    """The gold-path trajectory and whether plain search found every gold document."""
    messages = initial_messages(task.question)
    steps: list[Step] = []
    found_all = True
    known = ""
    for hop in task.hops:
        lead = f"{known} " if known else ""
        thought = f"{lead}Next I look up: {hop_query(hop)}."
        turns = [ParsedTurn("search", hop_query(hop), thought, f"<think>{thought}</think>\n")]
        observation = execute_turns(tool, turns, config)[0]
        if hop.doc_id not in observation.doc_ids:
            found_all = False
            _append(messages, steps, turns[0], observation)
            thought = f"The results do not show it; I will read the page of {hop.subject_name}."
            turns = [ParsedTurn("open", hop.doc_id, thought, f"<think>{thought}</think>\n")]
            observation = execute_turns(tool, turns, config)[0]
        _append(messages, steps, turns[0], observation)
        known = fact_sentence(hop)
    thought = f"{known} So the answer is {task.answer}."
    raw = f"<think>{thought}</think>\n<answer>{task.answer}</answer>"
    messages.append({"role": "assistant", "content": raw})
    steps.append(Step(index=len(steps), thought=thought, action="answer", argument=task.answer, raw=raw))
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
    )
    return trajectory, found_all


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
        trajectories.append(trajectory)
        if not found_all:
            failures.append(
                Failure(
                    stage="collect-oracle",
                    item_id=task.id,
                    error_class="GoldNotRetrieved",
                    message="search did not return a gold document; the oracle opened it by id",
                )
            )
    write_table(work, trajectories)
    if failures:
        write_table(work, failures, name="failures")


STAGE = Stage(name="collect-oracle", kind="trajectories", produce=produce_oracle, config_model=OracleConfig)
