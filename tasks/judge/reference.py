"""The reference judge: rates every step against the gold evidence that synthesised tasks carry.

It needs no language model, so the default pipeline annotates steps on a laptop, and it is the
yardstick that LLM judges are measured against. Ratings use SRR-Judge's 1-5 scale:

- search/open that surfaces a gold document not seen before: 5; one already seen: 3; none: 2
- a tool error: 1; an invalid action: 1
- answer: 5 when exactly right, 3 when partly (token F1 > 0), else 1
"""

from __future__ import annotations

from storage.schemas import Step, Task
from tasks.rewards.outcome import exact_match, token_f1

JUDGE_NAME = "reference"


def rate_steps(steps: list[Step], task: Task) -> list[int]:
    gold = set(task.evidence_doc_ids)
    answers = [task.answer, *task.aliases]
    seen: set[str] = set()
    ratings = []
    for step in steps:
        if step.action in ("search", "open"):
            if step.observation.startswith(("No document", "Calculation error")):
                ratings.append(1)
                continue
            found = gold & set(step.retrieved_doc_ids)
            ratings.append(5 if found - seen else 3 if found else 2)
            seen |= found
        elif step.action == "calculate":
            ratings.append(1 if step.observation.startswith("Calculation error") else 3)
        elif step.action == "answer":
            ratings.append(
                5 if exact_match(step.argument, answers) else 3 if token_f1(step.argument, answers) > 0 else 1
            )
        else:
            ratings.append(1)
    return ratings
