"""Which jobs of a GitHub Actions workflow run for a given event: a small evaluator of the
job graph that follows GitHub's documented rules, so a test can execute a workflow's
logic instead of only linting it.

Rules followed (docs.github.com, "Using conditions to control job execution",
"Status check functions", "Evaluate expressions", "Reusing workflows"):

- A workflow runs only for an event its `on:` accepts (event name, `types`, `branches`,
  `workflows` of workflow_run).
- A job without `if:` has the implicit condition `success()`. An `if:` that calls no
  status function (`success()`, `failure()`, `cancelled()`, `always()`) is evaluated as
  `success() && (<if>)`.
- At job level, `success()` is true only when every job upstream of it, directly or
  through other jobs, succeeded: a job skipped anywhere upstream makes it false even
  when the jobs in between ran. `failure()` is true when any upstream job failed;
  `cancelled()` when the run was cancelled; `always()` is always true.
- A job whose condition is false is skipped; its outputs are empty strings. A job may
  read `needs.<x>` only when it lists x in `needs:` (GitHub rejects the file otherwise).
- A job that calls a reusable workflow (`uses: ./.github/workflows/x.yml`) runs the
  called workflow's jobs with `inputs` taken from `with:` (and the input defaults),
  under the caller's `github` context; the calling job fails when one of them fails.
- Expressions: `&&`/`||` return an operand, `!`, comparisons with GitHub's coercion
  (null, booleans and strings become numbers when the types differ; strings compare
  case-insensitively), property access that yields null for anything missing, and the
  functions contains, startsWith, endsWith, format, join, toJSON, fromJSON.

Not modelled: matrix expansion (a matrix job counts as one job), step-level logic,
`continue-on-error`, timeouts. A job listed in `fail` is taken to fail when it runs.

Command line, to see what a workflow does for an event:
  python workflow_graph.py .github/workflows/deliver.yml workflow_dispatch apply=true
"""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

import yaml

REPOSITORY = "acme/order-service"

# --- expressions -------------------------------------------------------------------------

TOKEN = re.compile(
    r"\s*(?:"
    r"(?P<num>-?(?:0x[0-9a-fA-F]+|\d+(?:\.\d+)?(?:[eE][+-]?\d+)?))"
    r"|(?P<str>'(?:[^']|'')*')"
    r"|(?P<op>==|!=|<=|>=|&&|\|\||[<>!()\[\].,*])"
    r"|(?P<id>[A-Za-z_][A-Za-z0-9_-]*)"
    r")"
)
STATUS_FUNCTIONS = {"success", "failure", "cancelled", "always"}


class ExpressionError(ValueError):
    pass


def tokenize(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ExpressionError(f"cannot read {text[pos:]!r} in {text!r}")
        kind = m.lastgroup
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    return tokens


class Parser:
    """Recursive descent over GitHub's precedence: || < && < == != < < <= > >= < ! < access."""

    def __init__(self, text: str):
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    def peek(self, value: str | None = None):
        if self.i >= len(self.tokens):
            return None
        tok = self.tokens[self.i]
        if value is None or (tok[0] == "op" and tok[1] == value):
            return tok
        return None

    def take(self, value: str | None = None):
        tok = self.peek(value)
        if tok is None:
            raise ExpressionError(f"expected {value or 'a value'} in {self.text!r}")
        self.i += 1
        return tok

    def parse(self):
        node = self.or_()
        if self.i != len(self.tokens):
            raise ExpressionError(f"unexpected {self.tokens[self.i][1]!r} in {self.text!r}")
        return node

    def or_(self):
        node = self.and_()
        while self.peek("||"):
            self.take()
            node = ("or", node, self.and_())
        return node

    def and_(self):
        node = self.equality()
        while self.peek("&&"):
            self.take()
            node = ("and", node, self.equality())
        return node

    def equality(self):
        node = self.comparison()
        while self.peek("==") or self.peek("!="):
            op = self.take()[1]
            node = ("cmp", op, node, self.comparison())
        return node

    def comparison(self):
        node = self.unary()
        while any(self.peek(op) for op in ("<", "<=", ">", ">=")):
            op = self.take()[1]
            node = ("cmp", op, node, self.unary())
        return node

    def unary(self):
        if self.peek("!"):
            self.take()
            return ("not", self.unary())
        return self.postfix()

    def postfix(self):
        node = self.primary()
        while True:
            if self.peek("."):
                self.take()
                if self.peek("*"):
                    self.take()
                    node = ("star", node)
                else:
                    node = ("get", node, ("lit", self.take()[1]))
            elif self.peek("["):
                self.take()
                index = self.or_()
                self.take("]")
                node = ("get", node, index)
            else:
                return node

    def primary(self):
        kind, value = self.take()
        if kind == "num":
            return ("lit", int(value, 16) if value.lower().startswith(("0x", "-0x")) else float(value))
        if kind == "str":
            return ("lit", value[1:-1].replace("''", "'"))
        if kind == "op" and value == "(":
            node = self.or_()
            self.take(")")
            return node
        if kind == "id":
            if value in ("true", "false"):
                return ("lit", value == "true")
            if value == "null":
                return ("lit", None)
            if self.peek("("):
                self.take()
                args = []
                if not self.peek(")"):
                    args.append(self.or_())
                    while self.peek(","):
                        self.take()
                        args.append(self.or_())
                self.take(")")
                return ("call", value.lower(), args)
            return ("ctx", value.lower())
        raise ExpressionError(f"unexpected {value!r} in {self.text!r}")


def calls_status_function(node) -> bool:
    if not isinstance(node, tuple):
        return False
    if node[0] == "call" and node[1] in STATUS_FUNCTIONS:
        return True
    return any(calls_status_function(part) for part in node[1:] if isinstance(part, (tuple, list)))


def truthy(value) -> bool:
    if isinstance(value, float) and math.isnan(value):
        return False
    return value not in (None, False, 0, "")


def to_number(value) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if text == "":
            return 0.0
        try:
            return float(int(text, 16)) if text.lower().startswith("0x") else float(text)
        except ValueError:
            return math.nan
    return math.nan


def compare(op: str, a, b) -> bool:
    if isinstance(a, (dict, list)) or isinstance(b, (dict, list)):
        return (a is b) if op == "==" else (a is not b) if op == "!=" else False
    if isinstance(a, str) and isinstance(b, str):
        x, y = a.lower(), b.lower()
    elif type(a) is type(b) and not isinstance(a, str):
        x, y = a, b
    else:
        x, y = to_number(a), to_number(b)
        if math.isnan(x) or math.isnan(y):
            return op == "!="
    return {
        "==": x == y,
        "!=": x != y,
        "<": x < y,
        "<=": x <= y,
        ">": x > y,
        ">=": x >= y,
    }[op]


def to_string(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, indent=2)
    return str(value)


def get(obj, key):
    if isinstance(obj, dict):
        if not isinstance(key, str):
            return None
        for k, v in obj.items():
            if k.lower() == key.lower():
                return v
        return None
    if isinstance(obj, list) and isinstance(key, (int, float)) and not isinstance(key, bool):
        i = int(key)
        return obj[i] if 0 <= i < len(obj) else None
    return None


@dataclass
class Status:
    """What the status functions see for one job."""

    upstream: list[str] = field(default_factory=list)  # results of every job upstream
    run_cancelled: bool = False

    def call(self, name: str) -> bool:
        if name == "always":
            return True
        if name == "cancelled":
            return self.run_cancelled
        if name == "failure":
            return any(r == "failure" for r in self.upstream)
        # success(): every upstream job, transitively, succeeded.
        return not self.run_cancelled and all(r == "success" for r in self.upstream)


def evaluate(node, context: dict, status: Status | None = None):
    kind = node[0]
    if kind == "lit":
        return node[1]
    if kind == "ctx":
        if node[1] not in context:
            raise ExpressionError(f"unknown context {node[1]!r}")
        return context[node[1]]
    if kind == "get":
        return get(evaluate(node[1], context, status), evaluate(node[2], context, status))
    if kind == "star":
        base = evaluate(node[1], context, status)
        return list(base.values()) if isinstance(base, dict) else list(base or [])
    if kind == "not":
        return not truthy(evaluate(node[1], context, status))
    if kind == "and":
        left = evaluate(node[1], context, status)
        return evaluate(node[2], context, status) if truthy(left) else left
    if kind == "or":
        left = evaluate(node[1], context, status)
        return left if truthy(left) else evaluate(node[2], context, status)
    if kind == "cmp":
        return compare(node[1], evaluate(node[2], context, status), evaluate(node[3], context, status))
    if kind == "call":
        name, args = node[1], node[2]
        if name in STATUS_FUNCTIONS:
            if status is None:
                raise ExpressionError(f"{name}() is only allowed in if:")
            return status.call(name)
        values = [evaluate(a, context, status) for a in args]
        return call_function(name, values)
    raise ExpressionError(f"bad node {node!r}")


def call_function(name: str, args: list):
    if name == "contains":
        haystack, needle = args
        if isinstance(haystack, list):
            return any(compare("==", item, needle) for item in haystack)
        return to_string(needle).lower() in to_string(haystack).lower()
    if name == "startswith":
        return to_string(args[0]).lower().startswith(to_string(args[1]).lower())
    if name == "endswith":
        return to_string(args[0]).lower().endswith(to_string(args[1]).lower())
    if name == "format":
        template, rest = to_string(args[0]), args[1:]
        return re.sub(r"\{(\d+)\}", lambda m: to_string(rest[int(m.group(1))]), template)
    if name == "join":
        items = args[0] if isinstance(args[0], list) else [args[0]]
        sep = to_string(args[1]) if len(args) > 1 else ","
        return sep.join(to_string(i) for i in items)
    if name == "tojson":
        return json.dumps(args[0], indent=2)
    if name == "fromjson":
        return json.loads(to_string(args[0]))
    raise ExpressionError(f"unknown function {name}()")


EMBEDDED = re.compile(r"\$\{\{(.*?)\}\}", re.S)


def render(value, context: dict):
    """A `with:` or `outputs:` value: a whole expression keeps its type, text interpolates."""
    if not isinstance(value, str):
        return value
    # One expression and nothing else ("${{ a }}/${{ b }}" is text with two).
    whole = re.fullmatch(r"\s*\$\{\{((?:(?!\}\}).)*)\}\}\s*", value, re.S)
    if whole:
        return evaluate(Parser(whole.group(1)).parse(), context)
    return EMBEDDED.sub(lambda m: to_string(evaluate(Parser(m.group(1)).parse(), context)), value)


def condition(text) -> tuple:
    """The parsed job condition, with GitHub's implicit success() added where it applies."""
    if text is None:
        return ("call", "success", [])
    if isinstance(text, bool):
        return ("lit", text)
    text = str(text).strip()
    whole = re.fullmatch(r"\$\{\{(.*)\}\}", text, re.S)
    node = Parser(whole.group(1) if whole else text).parse()
    if calls_status_function(node):
        return node
    return ("and", ("call", "success", []), node)


# --- events ------------------------------------------------------------------------------


@dataclass
class Event:
    """One trigger: the event name and the `github` context a run of it sees."""

    name: str
    ref: str = "refs/heads/main"
    action: str | None = None
    payload: dict = field(default_factory=dict)
    inputs: dict = field(default_factory=dict)

    def github(self) -> dict:
        event = dict(self.payload)
        if self.action:
            event["action"] = self.action
        if self.name == "workflow_dispatch":
            event["inputs"] = self.inputs
        return {
            "event_name": self.name,
            "ref": self.ref,
            "ref_name": self.ref.rsplit("/", 1)[-1],
            "repository": REPOSITORY,
            "repository_owner": REPOSITORY.split("/")[0],
            "sha": "0123456789abcdef0123456789abcdef01234567",
            "run_id": "1",
            "server_url": "https://github.com",
            "token": "***",
            "event": event,
        }


def push(branch: str = "main") -> Event:
    return Event("push", ref=f"refs/heads/{branch}")


def pull_request(action: str, number: int = 7, fork: bool = False) -> Event:
    head_repo = "someone/order-service" if fork else REPOSITORY
    return Event(
        "pull_request",
        ref=f"refs/pull/{number}/merge",
        action=action,
        payload={
            "number": number,
            "pull_request": {
                "number": number,
                "head": {"sha": "feedface" * 5, "ref": "topic", "repo": {"full_name": head_repo}},
                "base": {"sha": "0badc0de" * 5, "ref": "main", "repo": {"full_name": REPOSITORY}},
            },
        },
    )


def schedule() -> Event:
    return Event("schedule")


def dispatch(ref: str = "refs/heads/main", **inputs) -> Event:
    return Event("workflow_dispatch", ref=ref, inputs=inputs)


def workflow_run(
    workflow: str = "ci",
    conclusion: str = "success",
    event: str = "push",
    branch: str = "main",
    head_repository: str = REPOSITORY,
) -> Event:
    """A completed run of another workflow; the triggered run sees the default branch."""
    return Event(
        "workflow_run",
        action="completed",
        payload={
            "workflow_run": {
                "name": workflow,
                "conclusion": conclusion,
                "event": event,
                "head_branch": branch,
                "head_sha": "c0ffee00" * 5,
                "head_repository": {"full_name": head_repository},
            }
        },
    )


def load(path: Path) -> dict:
    doc = yaml.safe_load(Path(path).read_text())
    if True in doc:  # PyYAML reads `on` as a boolean
        doc["on"] = doc.pop(True)
    return doc


def _branch_ok(filters: dict, branch: str | None) -> bool:
    if branch is None:
        return True
    if "branches" in filters:
        return any(fnmatchcase(branch, p) for p in filters["branches"])
    if "branches-ignore" in filters:
        return not any(fnmatchcase(branch, p) for p in filters["branches-ignore"])
    return True


DEFAULT_TYPES = {"pull_request": ["opened", "synchronize", "reopened"]}


def accepts(doc: dict, event: Event) -> bool:
    on = doc["on"]
    if isinstance(on, str):
        on = {on: None}
    elif isinstance(on, list):
        on = {name: None for name in on}
    if event.name not in on:
        return False
    filters = on[event.name] if isinstance(on[event.name], dict) else {}
    types = filters.get("types", DEFAULT_TYPES.get(event.name))
    if types is not None and event.action not in types:
        return False
    if event.name == "push":
        return _branch_ok(filters, event.ref.removeprefix("refs/heads/"))
    if event.name == "pull_request":
        return _branch_ok(filters, event.payload["pull_request"]["base"]["ref"])
    if event.name == "workflow_run":
        run = event.payload["workflow_run"]
        return run["name"] in filters.get("workflows", []) and _branch_ok(filters, run["head_branch"])
    return True


# --- the job graph -----------------------------------------------------------------------


@dataclass
class JobRun:
    job_id: str
    result: str  # success | failure | skipped
    environment: str | None = None
    outputs: dict = field(default_factory=dict)
    deps: list[str] = field(default_factory=list)  # keys of the jobs it waits for
    group: str | None = None  # its concurrency group, rendered
    cancel_in_progress: bool = False


def _needs(job: dict) -> list[str]:
    needs = job.get("needs", [])
    return [needs] if isinstance(needs, str) else list(needs)


def _order(jobs: dict) -> list[str]:
    done, order = set(), []

    def visit(job_id, path=()):
        if job_id in done:
            return
        if job_id in path:
            raise ExpressionError(f"needs cycle through {job_id}")
        for need in _needs(jobs[job_id]):
            if need not in jobs:
                raise ExpressionError(f"job {job_id} needs unknown job {need}")
            visit(need, (*path, job_id))
        done.add(job_id)
        order.append(job_id)

    for job_id in jobs:
        visit(job_id)
    return order


def _upstream(jobs: dict, job_id: str) -> set[str]:
    seen: set[str] = set()
    stack = list(_needs(jobs[job_id]))
    while stack:
        need = stack.pop()
        if need not in seen:
            seen.add(need)
            stack.extend(_needs(jobs[need]))
    return seen


def _input_defaults(spec: dict | None, given: dict) -> dict:
    values = {}
    for name, meta in (spec or {}).items():
        meta = meta or {}
        if name in given:
            values[name] = given[name]
        elif "default" in meta:
            values[name] = meta["default"]
        else:
            values[name] = "" if meta.get("type", "string") == "string" else None
    return values


@dataclass
class Evaluator:
    workflows_dir: Path
    fail: set[str] = field(default_factory=set)
    cancelled: bool = False
    variables: dict = field(default_factory=dict)

    def run(self, path: Path, event: Event) -> dict[str, JobRun]:
        """Every job of the workflow (called workflows' jobs as caller/job) and its result."""
        doc = load(path)
        if not accepts(doc, event):
            return {}
        on = doc["on"] if isinstance(doc["on"], dict) else {}
        inputs = {}
        if event.name == "workflow_dispatch":
            inputs = _input_defaults((on.get("workflow_dispatch") or {}).get("inputs"), event.inputs)
        return self._jobs(doc, event, inputs, prefix="")

    def _jobs(self, doc: dict, event: Event, inputs: dict, prefix: str) -> dict[str, JobRun]:
        jobs = doc.get("jobs", {})
        results: dict[str, JobRun] = {}
        for job_id in _order(jobs):
            job = jobs[job_id]
            # GitHub rejects the workflow when a job reads needs.<x> without needing x.
            unknown = set(re.findall(r"\bneeds\.([\w-]+)", yaml.safe_dump(job))) - set(_needs(job))
            if unknown:
                raise ExpressionError(f"{prefix}{job_id} reads needs.{sorted(unknown)[0]} but does not need it")
            context = {
                "github": event.github(),
                "inputs": inputs,
                "vars": self.variables,
                "needs": {
                    n: {"result": results[n].result, "outputs": results[n].outputs} for n in _needs(job)
                },
            }
            status = Status([results[u].result for u in _upstream(jobs, job_id)], self.cancelled)
            runs = truthy(evaluate(condition(job.get("if")), context, status))
            name = prefix + job_id
            if not runs:
                results[job_id] = JobRun(name, "skipped", outputs={k: "" for k in job.get("outputs", {})})
                continue
            if "uses" in job:
                called = self._call(job, context, event, name)
                for key, sub in called.items():
                    # Inside: its own needs; outside: whatever the calling job needs.
                    sub.deps = [f"{job_id}/{d}" for d in sub.deps] + _needs(job)
                    results[f"{job_id}/{key}"] = sub
                failed = any(r.result == "failure" for r in called.values()) or name in self.fail
                inner = [f"{job_id}/{k}" for k, r in called.items() if r.result != "skipped"]
                results[job_id] = JobRun(name, "failure" if failed else "success", deps=inner)
                continue
            env = job.get("environment")
            env = env.get("name") if isinstance(env, dict) else env
            env = render(env, context) if env is not None else None
            result = "failure" if name in self.fail else "success"
            # Step outputs are not simulated: a job that ran offers a placeholder value.
            outputs = {k: f"<{name}.{k}>" if result == "success" else "" for k in job.get("outputs", {})}
            group, cancel = _concurrency(job.get("concurrency"), context)
            results[job_id] = JobRun(name, result, env, outputs, _needs(job), group, cancel)
        return results

    def workflow_group(self, path: Path, event: Event) -> tuple[str | None, bool]:
        """The rendered workflow-level concurrency group of a run, and cancel-in-progress."""
        doc = load(path)
        on = doc["on"] if isinstance(doc["on"], dict) else {}
        inputs = {}
        if event.name == "workflow_dispatch":
            inputs = _input_defaults((on.get("workflow_dispatch") or {}).get("inputs"), event.inputs)
        context = {"github": event.github(), "inputs": inputs, "vars": self.variables}
        return _concurrency(doc.get("concurrency"), context)

    def _call(self, job: dict, context: dict, event: Event, name: str) -> dict[str, JobRun]:
        uses = job["uses"]
        if not uses.startswith("./.github/workflows/"):
            raise ExpressionError(f"{name}: only local reusable workflows are simulated, not {uses}")
        called = load(self.workflows_dir / Path(uses).name)
        spec = (called["on"].get("workflow_call") or {}).get("inputs")
        given = {k: render(v, context) for k, v in (job.get("with") or {}).items()}
        unknown = set(given) - set(spec or {})
        if unknown:
            raise ExpressionError(f"{name}: {uses} declares no input {sorted(unknown)}")
        missing = [k for k, m in (spec or {}).items() if (m or {}).get("required") and k not in given]
        if missing:
            raise ExpressionError(f"{name}: required inputs of {uses} not given: {missing}")
        inputs = _input_defaults(spec, given)
        return {k: v for k, v in self._jobs(called, event, inputs, prefix=f"{name}/").items()}


def _concurrency(spec, context: dict) -> tuple[str | None, bool]:
    if not spec:
        return None, False
    if isinstance(spec, str):
        return to_string(render(spec, context)), False
    cancel = render(spec.get("cancel-in-progress", False), context)
    return to_string(render(spec["group"], context)), truthy(cancel)


# --- concurrency across runs -------------------------------------------------------------


@dataclass
class _Job:
    key: str
    run: JobRun
    state: str = "queued"  # queued | pending | waiting (approval) | success | cancelled | skipped


@dataclass
class _Run:
    number: int
    name: str
    jobs: dict[str, _Job]
    group: str | None
    cancel_in_progress: bool
    state: str = "pending"  # pending | running | done | cancelled


class Concurrency:
    """Several runs of workflows side by side, under GitHub's concurrency rules.

    In a group, at most one run (workflow-level group) or job (job-level group) is in
    progress and at most one waits: a newer arrival cancels the pending one, and with
    cancel-in-progress also the one in progress. A job bound to an environment with
    required reviewers stops at `waiting` until approve() and keeps its group meanwhile.
    Jobs take no time otherwise, so only approvals hold anything up. A job whose
    dependency was cancelled or skipped is skipped (every workflow here asks for success).
    """

    def __init__(self, evaluator: Evaluator, reviewed: set[str]):
        self.evaluator = evaluator
        self.reviewed = reviewed
        self.runs: list[_Run] = []
        self.holders: dict[str, object] = {}
        self.pending: dict[str, object] = {}

    def start(self, path: Path, event: Event) -> int:
        results = self.evaluator.run(path, event)
        jobs = {k: _Job(k, r) for k, r in results.items() if r.result != "skipped"}
        group, cancel = self.evaluator.workflow_group(path, event)
        run = _Run(len(self.runs), Path(path).name, jobs, group, cancel)
        self.runs.append(run)
        if group:
            self._arrive(group, run, cancel)
        else:
            run.state = "running"
        self.settle()
        return run.number

    def state(self, run: int, key: str) -> str:
        return self.runs[run].jobs[key].state if key in self.runs[run].jobs else "not run"

    def approve(self, run: int, key: str) -> None:
        job = self.runs[run].jobs[key]
        assert job.state == "waiting", f"run {run} {key} is {job.state}, not waiting for approval"
        job.state = "approved"
        self.settle()

    def _arrive(self, group: str, item, cancel: bool) -> None:
        if cancel:
            for other in (self.pending.get(group), self.holders.get(group)):
                if other is not None:
                    self._cancel(other)
        holder = self.holders.get(group)
        if holder is None:
            self.holders[group] = item
            self._set(item, "running")
            return
        older = self.pending.get(group)
        if older is not None:
            self._cancel(older)
        self.pending[group] = item
        self._set(item, "pending")

    def _set(self, item, state: str) -> None:
        if isinstance(item, _Run):
            item.state = state
        elif state == "running":
            item.state = "queued" if item.state == "pending" else item.state
        else:
            item.state = state

    def _release(self, group: str | None, item) -> None:
        if group and self.holders.get(group) is item:
            del self.holders[group]
            waiting = self.pending.pop(group, None)
            if waiting is not None:
                self.holders[group] = waiting
                self._set(waiting, "running")

    def _cancel(self, item) -> None:
        if isinstance(item, _Run):
            item.state = "cancelled"
            for job in item.jobs.values():
                if job.state not in ("success",):
                    job.state = "cancelled"
                    self._drop(job)
            self._drop_run(item)
        else:
            item.state = "cancelled"
            self._drop(item)

    def _drop(self, job: _Job) -> None:
        group = job.run.group
        if group and self.pending.get(group) is job:
            del self.pending[group]
        self._release(group, job)

    def _drop_run(self, run: _Run) -> None:
        if run.group and self.pending.get(run.group) is run:
            del self.pending[run.group]
        self._release(run.group, run)

    def settle(self) -> None:
        progress = True
        while progress:
            progress = False
            for run in self.runs:
                if run.state != "running":
                    continue
                for job in run.jobs.values():
                    if self._step(run, job):
                        progress = True
                if all(j.state in ("success", "cancelled", "skipped") for j in run.jobs.values()):
                    run.state = "done"
                    self._release(run.group, run)
                    progress = True

    def _step(self, run: _Run, job: _Job) -> bool:
        if job.state not in ("queued", "approved"):
            return False
        deps = [run.jobs[d] for d in job.run.deps if d in run.jobs]
        if any(d.state in ("cancelled", "skipped") for d in deps):
            job.state = "skipped"
            self._drop(job)
            return True
        if not all(d.state == "success" for d in deps):
            return False
        group = job.run.group
        if group and self.holders.get(group) is not job:
            self._arrive(group, job, job.run.cancel_in_progress)
            if self.holders.get(group) is not job:
                return True
        if job.run.environment in self.reviewed and job.state != "approved":
            job.state = "waiting"
            return True
        job.state = "success"
        self._release(group, job)
        return True


def ran(results: dict[str, JobRun]) -> set[str]:
    """Names of the jobs that ran (called workflows' jobs as caller/job)."""
    return {job_id for job_id, r in results.items() if r.result != "skipped"}


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__.strip().splitlines()[-1])
        return 2
    path, event_name, *rest = argv
    kv = dict(item.split("=", 1) for item in rest)
    if event_name == "workflow_dispatch":
        event = dispatch(**{k: v == "true" if v in ("true", "false") else v for k, v in kv.items()})
    elif event_name == "push":
        event = push(kv.get("branch", "main"))
    elif event_name == "schedule":
        event = schedule()
    elif event_name == "pull_request":
        event = pull_request(kv.get("action", "opened"), fork=kv.get("fork") == "true")
    elif event_name == "workflow_run":
        event = workflow_run(conclusion=kv.get("conclusion", "success"), event=kv.get("event", "push"))
    else:
        print(f"unknown event {event_name}")
        return 2
    fail = set(filter(None, kv.get("fail", "").split(",")))
    results = Evaluator(Path(path).parent, fail=fail, variables={"IMAGE_REPOSITORY": "acme/order-service"}).run(
        Path(path), event
    )
    if not results:
        print(f"{Path(path).name} does not run for this event")
    for job_id, r in results.items():
        env = f" (environment {r.environment})" if r.environment else ""
        print(f"{r.result:8} {r.job_id}{env}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
