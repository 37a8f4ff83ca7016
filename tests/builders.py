"""Hand-made trajectories for tests that need a trajectory's shape, not a model's rollout."""

from storage.schemas import Step, Trajectory


def make_trajectory(
    steps: list[Step], trajectory_id: str = "t", task_id: str = "task", **fields
) -> Trajectory:
    """A greedy, finished-when-answered trajectory of ``steps``; its final answer is its answer
    step's argument unless ``final_answer`` says otherwise, and ``fields`` override the rest."""
    final = fields.pop("final_answer", next((s.argument for s in steps if s.action == "answer"), None))
    defaults = {
        "policy": "p",
        "sample_index": 0,
        "temperature": 0.0,
        "seed": 0,
        "messages_json": "[]",
        "tools_json": "[]",
        "finished": final is not None,
    }
    return Trajectory(
        id=trajectory_id, task_id=task_id, steps=steps, final_answer=final, **{**defaults, **fields}
    )
