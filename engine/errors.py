"""One exception hierarchy for the engine.

Every error a person can cause carries a message that can be shown as it is. The web app and the CLI
turn these into responses in exactly one place each.
"""


class FallwerkError(Exception):
    """Base class of every error the engine raises on purpose."""

    #: a short machine-readable code for scripts and JSON output
    code = "error"

    def __init__(self, message: str, *, element_id: str | None = None):
        super().__init__(message)
        self.message = message
        self.element_id = element_id

    def __str__(self) -> str:
        if self.element_id:
            return f"{self.element_id}: {self.message}"
        return self.message


class ModelError(FallwerkError):
    """A BPMN, DMN or form definition cannot be parsed or has errors."""

    code = "model_error"

    def __init__(self, message: str, *, findings=None, element_id: str | None = None):
        super().__init__(message, element_id=element_id)
        self.findings = list(findings or [])


class ExpressionError(FallwerkError):
    """An expression is outside the supported language, or failed while it was evaluated."""

    code = "expression_error"


class SandboxViolation(ExpressionError):
    """An expression tried something the sandbox forbids (imports, dunder access, exhausting a bound)."""

    code = "sandbox_violation"


class NotFound(FallwerkError):
    code = "not_found"


class PermissionDenied(FallwerkError):
    code = "permission_denied"


class StaleTask(FallwerkError):
    """The task is no longer open: completed by someone else, withdrawn by a timer, or cancelled."""

    code = "stale_task"


class ValidationFailed(FallwerkError):
    """Submitted data does not satisfy the task's form. `errors` maps field keys to messages."""

    code = "validation_failed"

    def __init__(self, message: str, *, errors: dict[str, list[str]] | None = None):
        super().__init__(message)
        self.errors = errors or {}


class Conflict(FallwerkError):
    """Another change to the same instance won; try again with fresh state."""

    code = "conflict"
