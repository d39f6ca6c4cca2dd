"""Fallwerk engine: parsing, deploying and running BPMN models. Never imports Flask."""

import logging as _logging

# SpiffWorkflow logs every task state change at INFO, and below INFO it puts the task's data, which is
# case data, into the record (it asks its own loggers' levels, which are unset). Logs must never hold
# case data (DOMAIN.md: data minimisation, retention), and the audit table records the state changes.
# Its loggers pass warnings only, whatever the level the process logs at; that also spares it the work
# of building those records' fields at every state change.
for _name in ("spiff", "spiff.task", "spiff.workflow"):
    _logging.getLogger(_name).setLevel(_logging.WARNING)
