"""engine.workflow_tasks: the tree walk's answers without the walk (compared on the whole corpus in
tests/corpus_driver.py at every step)."""

import pytest
from SpiffWorkflow.task import TaskState

from engine.workflow_tasks import tasks_in


def test_finished_states_only_are_refused():
    with pytest.raises(ValueError, match="unfinished states"):
        tasks_in(None, TaskState.COMPLETED)
    with pytest.raises(ValueError):
        tasks_in(None, TaskState.FINISHED_MASK)
