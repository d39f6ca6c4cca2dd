"""`fallwerk`: everything a person does outside the browser.

Every command prints one clear line on stderr and exits non-zero on error, never a traceback
(set FALLWERK_DEBUG=1 to see one). `--json` gives machine-readable output for scripts.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from datetime import datetime
from pathlib import Path

import click
from sqlalchemy import select

from . import config, db, identity
from .clock import Clock, FixedClock, parse_instant
from .errors import FallwerkError, ModelError, ValidationFailed
from .models import AuditEvent, Incident, ProcessInstance, Task, Timer, User

ROOT = Path(__file__).resolve().parent.parent


#: instance ids and versions: whole numbers the database's ids can hold
ID = click.IntRange(1, db.MAX_ID)


def _instant(text: str, option: str = "--now") -> datetime:
    try:
        return parse_instant(text)
    except (ValueError, OverflowError):
        _fail(f"{option} is not an ISO 8601 instant such as 2026-06-01T09:00:00Z: {text!r}")


class Context:
    def __init__(self, now: str | None):
        self.url = config.database_url()
        self.clock = FixedClock(_instant(now)) if now else Clock()
        self._engine = None

    @property
    def engine(self):
        if self._engine is None:
            self._engine = db.make_engine(self.url)
        return self._engine

    @functools.cached_property
    def factory(self):
        return db.make_session_factory(self.engine)

    def transaction(self):
        return db.transaction(self.factory)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


def _fail(message: str, code: int = 1):
    click.echo(f"fallwerk: error: {message}", err=True)
    sys.exit(code)


def _emit(as_json: bool, payload, text: str | None = None) -> None:
    if as_json:
        click.echo(json.dumps(payload, ensure_ascii=False, indent=2, default=str))
    elif text is not None:
        click.echo(text)


def _load_json(value: str | None, what: str = "--data") -> dict:
    if not value:
        return {}
    if value.startswith("@"):
        try:
            value = Path(value[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            _fail(f"cannot read {value[1:]}: {exc.strerror}")
    try:
        data = json.loads(value)
    except ValueError as exc:
        _fail(f"{what} is not valid JSON: {exc}")
    except RecursionError:
        _fail(f"{what} is nested too deeply")
    if not isinstance(data, dict):
        _fail(f"{what} must be a JSON object")
    return data


class FallwerkGroup(click.Group):
    """Turns every error into one line on stderr."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ValidationFailed as exc:
            details = "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.errors.items())
            _fail(f"{exc}" + (f" ({details})" if details else ""))
        except ModelError as exc:
            for finding in exc.findings:
                click.echo(str(finding), err=True)
            _fail(str(exc))
        except FallwerkError as exc:
            _fail(str(exc))
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
            raise
        except Exception as exc:
            if os.environ.get("FALLWERK_DEBUG"):
                raise
            _fail(f"unexpected {type(exc).__name__}: {exc}", code=2)


@click.group(cls=FallwerkGroup)
@click.option("--now", metavar="ISO", help="Act as if it were this instant (for tests and dry runs).")
@click.pass_context
def main(ctx, now):
    """Fallwerk: BPMN procedures for the counselling network."""
    logging.basicConfig(level=os.environ.get("FALLWERK_LOG_LEVEL", "WARNING"), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    ctx.obj = Context(now)
    ctx.call_on_close(ctx.obj.close)


pass_ctx = click.make_pass_decorator(Context)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
user_option = click.option("--user", required=True, help="The user acting.")


# --- database and models ------------------------------------------------------------------------------
@main.command()
@click.option("--organisation", type=click.Path(dir_okay=False), default=None,
              help="Organisation data file to load (default: data/organisation.json if present).")
@pass_ctx
def init(c: Context, organisation):
    """Create or upgrade the database, and load the organisation data."""
    from .migrate import upgrade

    upgrade(c.engine)
    path = Path(organisation) if organisation else ROOT / "data" / "organisation.json"
    if path.exists():
        with c.transaction() as session:
            identity.load_organisation(session, path)
    click.echo(f"database ready: {c.engine.url.render_as_string(hide_password=True)}")


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path())
@json_option
def check(files, as_json):
    """Check BPMN, DMN and form files; exit status 1 if any finding is an error."""
    from .check import check_sources
    from .deploy import FORM_SUFFIX
    from .forms import check_form

    sources, findings = {}, []
    for name in files:
        try:
            sources[name] = Path(name).read_bytes()
        except OSError as exc:
            _fail(f"cannot read {name}: {exc.strerror or exc}")
    models = {n: s for n, s in sources.items() if not n.endswith(FORM_SUFFIX)}
    if models:
        findings.extend(check_sources(models).findings)
    for name, content in sources.items():
        if name.endswith(FORM_SUFFIX):
            findings.extend(check_form(content, file=name))
    errors = [f for f in findings if f.severity == "error"]
    if as_json:
        _emit(True, {"ok": not errors, "findings": [f.to_dict() for f in findings]})
    else:
        for f in findings:
            click.echo(f"{f}" if f.severity == "error" else f"{f} (warning)")
        click.echo(f"{len(files)} file(s), {len(errors)} error(s), {len(findings) - len(errors)} warning(s)",
                   err=True)
    sys.exit(1 if errors else 0)


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("--user", default="admin", show_default=True)
@json_option
@pass_ctx
def deploy(c: Context, files, user, as_json):
    """Deploy models: each changed process becomes a new version; any error deploys nothing."""
    from .deploy import deploy as do_deploy
    from .deploy import read_sources

    with c.transaction() as session:
        result = do_deploy(session, read_sources(files), user=user, now=c.clock.now())
    rows = [{"key": d.key, "version": d.version, "status": "deployed"} for d in result.created]
    rows += [{"key": d.key, "version": d.version, "status": "unchanged"} for d in result.unchanged]
    for f in result.findings:
        click.echo(f"{f} (warning)", err=True)
    _emit(as_json, {"deployment": result.deployment_id, "processes": rows},
          "\n".join(f"{r['key']} version {r['version']}: {r['status']}" for r in rows) or "nothing to deploy")


@main.command()
@json_option
@pass_ctx
def definitions(c: Context, as_json):
    """List deployed processes and versions."""
    from .deploy import list_definitions

    with c.transaction() as session:
        rows = [{"key": d.key, "version": d.version, "name": d.name, "deployed_at": d.deployed_at.isoformat(),
                 "running": n} for d, n in list_definitions(session)]
    _emit(as_json, rows, "\n".join(f"{r['key']:<32} v{r['version']:<4} {r['running']:>5} running  {r['name']}"
                                   for r in rows) or "no processes deployed")


@main.command()
@click.argument("key")
@click.option("--from", "from_version", type=ID, required=True, help="The version the instances run on.")
@click.option("--to", "to_version", type=ID, required=True, help="The version to move them to.")
@click.option("--dry-run", is_flag=True, help="Only list what would move and what cannot (and why).")
@click.option("--user", default="admin", show_default=True, help="Who migrates (recorded in the audit trail).")
@json_option
@pass_ctx
def migrate(c: Context, key, from_version, to_version, dry_run, user, as_json):
    """Move running instances of KEY from one version to another where their position still exists."""
    from .migration import migrate_instances, plan_migration

    if dry_run:
        with c.transaction() as session:
            plan = plan_migration(session, key, from_version, to_version)
        lines = [f"{p.instance_id} {p.case_number}: would move (at {', '.join(p.active) or '-'})" if p.movable
                 else f"{p.instance_id} {p.case_number}: cannot move: {'; '.join(r.message for r in p.reasons)}"
                 for p in plan.instances]
        lines.append(f"{len(plan.movable)} would move, {len(plan.blocked)} cannot")
        _emit(as_json, plan.to_dict(), "\n".join(lines))
        return
    report = migrate_instances(c.transaction, key, from_version, to_version, user=user, clock=c.clock)
    lines = [f"{p.instance_id} {p.case_number}: moved to version {to_version}" for p in report.migrated]
    lines += [f"{p.instance_id}: not moved: {'; '.join(r.message for r in p.reasons)}" for p in report.failed]
    lines.append(f"{len(report.migrated)} moved, {len(report.failed)} not moved")
    _emit(as_json, report.to_dict(), "\n".join(lines))


# --- instances ----------------------------------------------------------------------------------------
def _runtime(c: Context, session):
    from .runtime import Runtime

    return Runtime(session, clock=c.clock)


@main.command()
@click.argument("key")
@click.option("--data", default=None, help="Start data as a JSON object (or @file.json).")
@click.option("--version", type=ID, default=None, help="A specific version (default: the newest).")
@user_option
@json_option
@pass_ctx
def start(c: Context, key, data, version, user, as_json):
    """Start an instance of a deployed process."""
    with c.transaction() as session:
        instance = _runtime(c, session).start(key, user=_known(session, user), data=_load_json(data),
                                              version=version)
        summary = _instance_summary(session, instance)
    _emit(as_json, summary, _summary_text(summary))


def _known(session, user: str) -> str:
    """`user`, who must exist (the audit trail names them); "system" stands for the engine itself."""
    if user != "system" and session.scalar(select(User.id).where(User.username == user)) is None:
        raise FallwerkError(f"unknown user {user!r} (fallwerk user add creates one)")
    return user


def _resolve_task(session, task_id: str) -> str:
    if len(task_id) == 36:
        return task_id
    matches = session.scalars(select(Task.id).where(Task.id.like(f"{task_id}%")).limit(2)).all()
    if len(matches) != 1:
        raise FallwerkError(f"no task matches '{task_id}'" if not matches else f"'{task_id}' is ambiguous")
    return matches[0]


@main.command()
@click.option("--user", default=None, help="Only tasks this user may work on.")
@click.option("--instance", type=ID, default=None)
@click.option("--all", "show_all", is_flag=True, help="Include completed and withdrawn tasks.")
@json_option
@pass_ctx
def tasks(c: Context, user, instance, show_all, as_json):
    """List open tasks."""
    from .queries import open_tasks_for_user

    with c.transaction() as session:
        if user:
            rows = open_tasks_for_user(session, identity.get_user(session, user), limit=500)
        else:
            query = select(Task).order_by(Task.created_at)
            if not show_all:
                query = query.where(Task.state == "open")
            if instance is not None:
                query = query.where(Task.instance_id == instance)
            rows = session.scalars(query.limit(1000)).all()
        if user and instance is not None:
            rows = [r for r in rows if r.instance_id == instance]
        out = [_task_dict(r) for r in rows]
    _emit(as_json, out, "\n".join(
        f"{t['id'][:8]}  #{t['instance']:<5} {t['state']:<9} {t['element_id']:<28} {t['title']}"
        f"{'  @' + t['assignee'] if t['assignee'] else ''}" for t in out) or "no tasks")


def _task_dict(row: Task) -> dict:
    return {
        "id": row.id, "instance": row.instance_id, "process": row.process_key, "element_id": row.element_id,
        "title": row.title, "kind": row.kind, "state": row.state, "assignee": row.assignee,
        "candidate_users": [u for u in (row.candidate_users or "").split(",") if u],
        "candidate_groups": [g for g in (row.candidate_groups or "").split(",") if g],
        "due_at": row.due_at, "follow_up_at": row.follow_up_at, "priority": row.priority,
        "form_ref": row.form_ref, "lane": row.lane, "completed_by": row.completed_by,
    }


@main.command()
@click.argument("task_id")
@user_option
@pass_ctx
def claim(c: Context, task_id, user):
    """Take a task over (übernehmen)."""
    with c.transaction() as session:
        row = _runtime(c, session).claim(_resolve_task(session, task_id), user=user)
    click.echo(f"task {row.id} claimed by {user}")


@main.command()
@click.argument("task_id")
@user_option
@pass_ctx
def unclaim(c: Context, task_id, user):
    """Release a task (freigeben)."""
    with c.transaction() as session:
        row = _runtime(c, session).unclaim(_resolve_task(session, task_id), user=user)
    click.echo(f"task {row.id} released")


@main.command()
@click.argument("task_id")
@click.option("--to", "assignee", required=True, help="The colleague to hand the task to.")
@user_option
@pass_ctx
def assign(c: Context, task_id, assignee, user):
    """Hand a task over to a colleague (weitergeben)."""
    with c.transaction() as session:
        row = _runtime(c, session).assign(_resolve_task(session, task_id), assignee=assignee, user=user)
    click.echo(f"task {row.id} assigned to {assignee}")


@main.command()
@click.argument("task_id")
@click.option("--data", default=None, help="Form values as a JSON object (or @file.json).")
@user_option
@json_option
@pass_ctx
def complete(c: Context, task_id, data, user, as_json):
    """Complete a task with data; the data is validated against the task's form."""
    with c.transaction() as session:
        instance = _runtime(c, session).complete(_resolve_task(session, task_id), user=user, data=_load_json(data))
        summary = _instance_summary(session, instance)
    _emit(as_json, summary, _summary_text(summary))


@main.command()
@click.argument("instance_id", type=ID)
@click.argument("name")
@click.option("--data", default=None, help="Message payload as a JSON object.")
@click.option("--user", default="system", show_default=True)
@json_option
@pass_ctx
def message(c: Context, instance_id, name, data, user, as_json):
    """Send a named message with a payload to an instance."""
    with c.transaction() as session:
        instance = _runtime(c, session).send_message(instance_id, name, user=_known(session, user),
                                                     payload=_load_json(data))
        summary = _instance_summary(session, instance)
    _emit(as_json, summary, _summary_text(summary))


@main.command()
@click.argument("instance_id", type=ID)
@user_option
@click.option("--reason", default="", help="Why it is cancelled (recorded in the audit trail).")
@pass_ctx
def cancel(c: Context, instance_id, user, reason):
    """Cancel a running instance."""
    with c.transaction() as session:
        _runtime(c, session).cancel(instance_id, user=_known(session, user), reason=reason)
    click.echo(f"instance {instance_id} cancelled")


@main.command()
@click.argument("instance_id", type=ID)
@json_option
@pass_ctx
def show(c: Context, instance_id, as_json):
    """Status, data, active and completed elements, open tasks and incidents of an instance."""
    with c.transaction() as session:
        instance = session.get(ProcessInstance, instance_id)
        if instance is None:
            raise FallwerkError(f"no instance {instance_id}")
        summary = _instance_summary(session, instance, full=True)
    _emit(as_json, summary, _summary_text(summary, full=True))


def _instance_summary(session, instance: ProcessInstance, full: bool = False) -> dict:
    from SpiffWorkflow.task import TaskState

    from .runtime import Runtime, instance_data

    session.flush()
    open_rows = session.scalars(select(Task).where(Task.instance_id == instance.id, Task.state == "open")).all()
    summary = {
        "id": instance.id, "case_number": instance.case_number, "process": instance.process_key,
        "version": instance.definition.version, "status": instance.status,
        "has_incident": instance.has_incident,
        "active": [e for e in instance.active_elements.split(",") if e],
        "tasks": [_task_dict(r) for r in open_rows],
    }
    if full:
        workflow = Runtime(session).load_workflow(instance)
        completed = [t.task_spec.bpmn_id for t in workflow.get_tasks(state=TaskState.COMPLETED)
                     if t.task_spec.bpmn_id]
        summary["completed"] = list(dict.fromkeys(completed))
        summary["data"] = instance_data(workflow)
        summary["started_by"] = instance.started_by
        summary["started_at"] = instance.started_at
        summary["ended_at"] = instance.ended_at
        summary["incidents"] = [
            {"id": i.id, "element_id": i.element_id, "message": i.message, "attempt": i.attempt,
             "at": i.created_at, "resolved": i.resolved_at is not None}
            for i in session.scalars(select(Incident).where(Incident.instance_id == instance.id))
        ]
        summary["timers"] = [
            {"element_id": t.element_id, "due_at": t.due_at, "state": t.state, "attempts": t.attempts,
             "next_attempt_at": t.next_attempt_at, "fired_at": t.fired_at}
            for t in session.scalars(select(Timer).where(Timer.instance_id == instance.id).order_by(Timer.due_at))
        ]
        summary["history"] = [
            {"at": e.at, "actor": e.actor, "action": e.action, "element_id": e.element_id,
             "changed_keys": [k for k in e.changed_keys.split(",") if k]}
            for e in session.scalars(select(AuditEvent).where(AuditEvent.instance_id == instance.id)
                                     .order_by(AuditEvent.id))
        ]
    return summary


def _summary_text(s: dict, full: bool = False) -> str:
    lines = [f"instance {s['id']} ({s['case_number']}) {s['process']} v{s['version']}: {s['status']}"
             + ("  [INCIDENT]" if s["has_incident"] else "")]
    if s["active"]:
        lines.append("  active: " + ", ".join(s["active"]))
    for t in s["tasks"]:
        who = t["assignee"] or ", ".join(t["candidate_groups"] + t["candidate_users"])
        lines.append(f"  task {t['id']}  {t['element_id']}  {t['title']}  ({who})")
    if full:
        lines.append("  completed: " + ", ".join(s["completed"]))
        lines.append("  data: " + json.dumps(s["data"], ensure_ascii=False, default=str))
        for i in s["incidents"]:
            state = "resolved" if i["resolved"] else "OPEN"
            lines.append(f"  incident {i['id']} [{state}] at {i['element_id']} "
                         f"(attempt {i['attempt']}): {i['message']}")
        for t in s["timers"]:
            when = {"fired": f"fired {_iso(t['fired_at'])}", "waiting": "waiting", "failed": "FAILED"}.get(t["state"])
            if t["state"] == "waiting" and t["next_attempt_at"]:
                when += f", attempt {t['attempts'] + 1} at {_iso(t['next_attempt_at'])}"
            lines.append(f"  timer {t['element_id']} due {_iso(t['due_at'])}: {when}")
    return "\n".join(lines)


def _iso(at) -> str:
    return at.isoformat(timespec="seconds").replace("+00:00", "Z") if at else "-"


@main.command()
@click.option("--all", "show_all", is_flag=True, help="Include resolved incidents.")
@json_option
@pass_ctx
def incidents(c: Context, show_all, as_json):
    """List incidents (Störungen)."""
    with c.transaction() as session:
        query = select(Incident).order_by(Incident.id)
        if not show_all:
            query = query.where(Incident.resolved_at.is_(None))
        rows = [{"id": i.id, "instance": i.instance_id, "element_id": i.element_id, "message": i.message,
                 "attempt": i.attempt, "at": i.created_at, "resolved_at": i.resolved_at}
                for i in session.scalars(query)]
    _emit(as_json, rows, "\n".join(f"#{r['instance']:<6} {_iso(r['at'])}  {r['element_id'] or '-'}: {r['message']} "
                                   f"(attempt {r['attempt']})" for r in rows) or "no incidents")


@main.command("data")
@click.argument("instance_id", type=ID)
@click.option("--set", "values", default=None, help="Values to set, as a JSON object (or @file.json).")
@click.option("--unset", multiple=True, metavar="KEY", help="A key to remove (repeatable).")
@click.option("--reason", default="", help="Why (recorded in the audit trail).")
@user_option
@json_option
@pass_ctx
def data_command(c: Context, instance_id, values, unset, reason, user, as_json):
    """Correct the data of a running instance (audited); `fallwerk retry` then runs it on."""
    with c.transaction() as session:
        instance = _runtime(c, session).set_data(instance_id, _load_json(values, "--set"), user=_known(session, user),
                                                 unset=tuple(unset), reason=reason)
        summary = _instance_summary(session, instance, full=True)
    _emit(as_json, summary, _summary_text(summary, full=True))


@main.command()
@click.argument("instance_id", type=ID)
@click.option("--user", default="admin", show_default=True)
@json_option
@pass_ctx
def retry(c: Context, instance_id, user, as_json):
    """Run an instance with an incident again, after the model or data was fixed."""
    with c.transaction() as session:
        instance = _runtime(c, session).retry(instance_id, user=user)
        summary = _instance_summary(session, instance)
    _emit(as_json, summary, _summary_text(summary))


@main.command()
@click.option("--once", is_flag=True, help="One pass over due timers, then exit.")
@click.option("--now", "at", metavar="ISO", default=None, help="Fire what is due at this instant (as --now).")
@click.option("--interval", default=1.0, show_default=True, help="Seconds between polls.")
@click.option("--batch", default=100, show_default=True, help="Instances per pass.")
@json_option
@pass_ctx
def worker(c: Context, once, at, interval, batch, as_json):
    """Fire due timers and run their instances on (until SIGTERM; logs on stderr, JSON lines with --json)."""
    from . import worker as worker_module

    clock = FixedClock(_instant(at)) if at else c.clock
    worker_module.configure_logging(as_json=as_json and not once, level=os.environ.get("FALLWERK_LOG_LEVEL"))
    if once:
        stats = worker_module.run_once(c.factory, clock, batch=batch)
        _emit(as_json, {"fired": stats.fired, "failed": stats.failed, "instances": stats.instances,
                        "timers": [{"instance": f.instance, "element": f.element, "due": f.due,
                                    "outcome": f.outcome, "lateness": f.lateness} for f in stats.firings]},
              f"fired {stats.fired} timer(s), {stats.failed} failure(s)")
        return
    worker_module.run_forever(c.factory, clock, interval=interval, batch=batch)


@main.command()
@click.option("--cases", default=36, show_default=True, help="How many demo cases to create.")
@pass_ctx
def demo(c: Context, cases):
    """Set up a demo database: organisation, users for every role, procedures and cases."""
    from . import demo as demo_module
    from .migrate import upgrade

    upgrade(c.engine)
    created = demo_module.build(c.factory, ROOT)
    click.echo(f"demo database ready: {c.engine.url.render_as_string(hide_password=True)} "
               f"({created} new cases)")
    click.echo(f"demo users (password '{demo_module.DEMO_PASSWORD}'): "
               + ", ".join(u for u, _, _ in demo_module.DEMO_USERS))


# --- accounts -----------------------------------------------------------------------------------------
@main.group()
def user():
    """Manage user accounts."""


@user.command("add")
@click.argument("username")
@click.option("--name", "display_name", default="", help="Display name.")
@click.option("--email", default=None)
@click.option("--password", default=None, help="Initial password (prompted if --prompt-password).")
@click.option("--member", "members", multiple=True, metavar="UNIT:ROLE",
              help="Membership, e.g. lks:coordinator (repeatable).")
@pass_ctx
def user_add(c: Context, username, display_name, email, password, members):
    """Create a user or add memberships to an existing one."""
    pairs = []
    for member in members:
        unit, _, role = member.partition(":")
        if not unit or not role:
            raise FallwerkError(f"--member must be UNIT:ROLE, got '{member}'")
        pairs.append((unit, role))
    with c.transaction() as session:
        identity.add_user(session, username, now=c.clock.now(), display_name=display_name, email=email,
                          password=password, memberships=pairs)
    click.echo(f"user {username} saved")


@main.group()
def group():
    """Manage units (Stellen), which are the candidate groups of tasks."""


@group.command("add")
@click.argument("unit_id")
@click.option("--name", default=None)
@click.option("--kind", default="service", show_default=True)
@pass_ctx
def group_add(c: Context, unit_id, name, kind):
    """Create or update a unit."""
    with c.transaction() as session:
        identity.add_unit(session, unit_id, name=name, kind=kind)
    click.echo(f"unit {unit_id} saved")




if __name__ == "__main__":
    main()
