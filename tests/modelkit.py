"""Small BPMN models written inline, for engine tests and benchmarks."""

from __future__ import annotations

HEADER = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" '
    'xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="Definitions_{pid}" '
    'targetNamespace="http://bpmn.io/schema/bpmn">\n'
)


def definitions(pid: str, body: str, extra: str = "", name: str | None = None) -> bytes:
    return (
        HEADER.format(pid=pid)
        + extra
        + f'<bpmn:process id="{pid}" name="{name or pid}" isExecutable="true">\n{body}\n</bpmn:process>\n'
        + "</bpmn:definitions>\n"
    ).encode()


def flow(fid: str, source: str, target: str, condition: str | None = None) -> str:
    if condition is None:
        return f'<bpmn:sequenceFlow id="{fid}" sourceRef="{source}" targetRef="{target}" />'
    return (
        f'<bpmn:sequenceFlow id="{fid}" sourceRef="{source}" targetRef="{target}">'
        f'<bpmn:conditionExpression xsi:type="bpmn:tFormalExpression" '
        f'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><![CDATA[{condition}]]>'
        f"</bpmn:conditionExpression></bpmn:sequenceFlow>"
    )


def user_task(tid: str, name: str, attrs: str = "", body: str = "") -> str:
    return f'<bpmn:userTask id="{tid}" name="{name}" {attrs}>{body}</bpmn:userTask>'


def chain(pid: str = "chain", n: int = 10, groups: str = "rz-west") -> bytes:
    """Start, n user tasks for `groups`, end."""
    parts = ['<bpmn:startEvent id="start" />']
    prev = "start"
    for i in range(1, n + 1):
        parts.append(user_task(f"t{i}", f"Schritt {i}", f'camunda:candidateGroups="{groups}"'))
        parts.append(flow(f"f{i}", prev, f"t{i}"))
        prev = f"t{i}"
    parts.append('<bpmn:endEvent id="end" />')
    parts.append(flow("f_end", prev, "end"))
    return definitions(pid, "\n".join(parts))


def split(pid: str = "split") -> bytes:
    """Two parallel user tasks, a (group rz-west) and b (user bob), joined before c (group rz-west)."""
    return definitions(pid, "\n".join([
        '<bpmn:startEvent id="start" />', '<bpmn:parallelGateway id="fork" />',
        user_task("a", "A", 'camunda:candidateGroups="rz-west"'),
        user_task("b", "B", 'camunda:candidateUsers="bob"'),
        '<bpmn:parallelGateway id="join" />', user_task("c", "C", 'camunda:candidateGroups="rz-west"'),
        '<bpmn:endEvent id="end" />',
        flow("f0", "start", "fork"), flow("f1", "fork", "a"), flow("f2", "fork", "b"),
        flow("f3", "a", "join"), flow("f4", "b", "join"), flow("f5", "join", "c"), flow("f6", "c", "end"),
    ]))


def approval(pid: str = "approval") -> bytes:
    """A request with an inline form, an approval by the unit lead, and a ${} condition."""
    form = (
        "<bpmn:extensionElements><camunda:formData>"
        '<camunda:formField id="amount" label="Betrag" type="long">'
        '<camunda:validation><camunda:constraint name="required" />'
        '<camunda:constraint name="min" config="1" /><camunda:constraint name="max" config="10000" />'
        "</camunda:validation></camunda:formField>"
        '<camunda:formField id="reason" label="Begründung" type="string" />'
        "</camunda:formData></bpmn:extensionElements>"
    )
    decide = (
        "<bpmn:extensionElements><camunda:formData>"
        '<camunda:formField id="approved" label="Genehmigt" type="boolean" />'
        "</camunda:formData></bpmn:extensionElements>"
    )
    body = "\n".join([
        '<bpmn:startEvent id="start" />',
        user_task("request", "Antrag stellen", 'camunda:assignee="${initiator}"', form),
        user_task("decide", "Antrag prüfen",
                  'camunda:candidateGroups="${unit}:lead" camunda:dueDate="P3D" camunda:priority="70"', decide),
        '<bpmn:exclusiveGateway id="gw" default="f_no" />',
        '<bpmn:endEvent id="end_yes" name="genehmigt" />',
        '<bpmn:endEvent id="end_no" name="abgelehnt" />',
        flow("f1", "start", "request"),
        flow("f2", "request", "decide"),
        flow("f3", "decide", "gw"),
        flow("f_yes", "gw", "end_yes", "${approved && amount <= 5000}"),
        flow("f_no", "gw", "end_no"),
    ])
    return definitions(pid, body)


def with_script(pid: str, script: str, *, condition: str = "True") -> bytes:
    """A user task, then a script task, then a gateway with `condition`."""
    body = "\n".join([
        '<bpmn:startEvent id="start" />',
        user_task("first", "Erfassen"),
        f'<bpmn:scriptTask id="script" name="Rechnen" scriptFormat="python"><bpmn:script><![CDATA[{script}]]>'
        "</bpmn:script></bpmn:scriptTask>",
        '<bpmn:exclusiveGateway id="gw" default="f_other" />',
        user_task("after", "Weiter"),
        '<bpmn:endEvent id="end" />',
        '<bpmn:endEvent id="end_other" />',
        flow("f1", "start", "first"),
        flow("f2", "first", "script"),
        flow("f3", "script", "gw"),
        flow("f_ok", "gw", "after", condition),
        flow("f_other", "gw", "end_other"),
        flow("f4", "after", "end"),
    ])
    return definitions(pid, body)


def boundary_timer(pid: str = "deadline", duration: str = "P2D", interrupting: bool = True) -> bytes:
    """A user task with a boundary timer that withdraws it (or, non-interrupting, adds a reminder)."""
    cancel = "true" if interrupting else "false"
    body = "\n".join([
        '<bpmn:startEvent id="start" />',
        user_task("work", "Erstkontakt", 'camunda:candidateGroups="rz-west"'),
        f'<bpmn:boundaryEvent id="timeout" attachedToRef="work" cancelActivity="{cancel}">'
        f'<bpmn:timerEventDefinition id="td"><bpmn:timeDuration xsi:type="bpmn:tFormalExpression" '
        f'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">{duration}</bpmn:timeDuration>'
        f"</bpmn:timerEventDefinition></bpmn:boundaryEvent>",
        user_task("remind", "Erinnerung", 'camunda:candidateGroups="rz-west:lead"'),
        '<bpmn:endEvent id="end" />',
        '<bpmn:endEvent id="end_late" />',
        flow("f1", "start", "work"),
        flow("f2", "work", "end"),
        flow("f3", "timeout", "remind"),
        flow("f4", "remind", "end_late"),
    ])
    return definitions(pid, body)


def message_wait(pid: str = "waiter") -> bytes:
    extra = '<bpmn:message id="Msg_go" name="go" />\n'
    body = "\n".join([
        '<bpmn:startEvent id="start" />',
        '<bpmn:intermediateCatchEvent id="wait"><bpmn:messageEventDefinition id="med" messageRef="Msg_go" />'
        "</bpmn:intermediateCatchEvent>",
        user_task("after", "Weiter"),
        '<bpmn:endEvent id="end" />',
        flow("f1", "start", "wait"),
        flow("f2", "wait", "after"),
        flow("f3", "after", "end"),
    ])
    return definitions(pid, body, extra)
