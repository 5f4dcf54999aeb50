"""The registry of declared tasks; registering one also gives `Model` its method, with the declared signature."""
from __future__ import annotations

import inspect
from typing import Any, Callable

from bertkit.model import Model
from bertkit.options import specs
from bertkit.tasks.base import Task, run_task

_TASKS: dict[str, Task] = {}
_INSTALLED: dict[str, str] = {}  # Model attribute -> the task that installed it


def register(task: Task | type[Task]) -> Task:
    """Add a task: `model.<method>(...)`, `bertkit <name>` and `POST /v1/<name>` all come from it. Returns the instance."""
    task = task() if isinstance(task, type) else task
    missing = task.undeclared()
    if missing:
        raise TypeError(f"{type(task).__name__} must declare {', '.join(missing)}")
    clash = next((t for t in _TASKS.values() if t.method == task.method and t.name != task.name), None)
    if clash is not None:
        raise ValueError(f"task {task.name!r}: method {task.method!r} is already task {clash.name!r}'s")
    _TASKS[task.name] = task
    _install(task.method, _task_method(task), task.name)
    for name, fn in task.methods.items():
        _install(name, fn, task.name)
    return task


def unregister(name: str) -> None:
    """Remove a task and the Model methods it installed (tests declare throwaway tasks)."""
    task = _TASKS.pop(name)
    for attr, owner in list(_INSTALLED.items()):
        if owner == task.name:
            delattr(Model, attr)
            del _INSTALLED[attr]


def tasks() -> list[Task]:
    """Every registered task, in registration order."""
    return list(_TASKS.values())


def get(name: str) -> Task:
    """A task by its name (`fill-mask`) or method (`fill_mask`)."""
    for task in _TASKS.values():
        if name in (task.name, task.method):
            return task
    raise KeyError(name)


def _install(attr: str, fn: Callable, owner: str) -> None:
    if attr in vars(Model) and _INSTALLED.get(attr) != owner:
        raise ValueError(f"Model.{attr} exists already; task {owner!r} cannot install a method of that name")
    setattr(Model, attr, fn)
    _INSTALLED[attr] = owner


def _task_method(task: Task) -> Callable:
    """A Model method whose signature is the task's: its leading parameters (by default its input), its pairs,
    its options, batch_tokens, then the keyword-only options (long documents)."""
    P = inspect.Parameter
    option_specs = specs(task.Options)
    by_name = {s.name: s for s in option_specs}
    leading = task.leading or (task.input_name,)
    params = [P("self", P.POSITIONAL_OR_KEYWORD)]
    for name in leading:  # the input, or required options a call reads best before it (rerank: query, then texts)
        spec = by_name.get(name)
        params.append(P(name, P.POSITIONAL_OR_KEYWORD, annotation=spec.annotation if spec else P.empty))
    if task.pair_name:
        params.append(P(task.pair_name, P.POSITIONAL_OR_KEYWORD, default=None))
    params += [P(s.name, P.POSITIONAL_OR_KEYWORD, default=P.empty if s.required else s.default, annotation=s.annotation)
               for s in option_specs if not s.kw_only and s.name not in leading]
    params.append(P("batch_tokens", P.POSITIONAL_OR_KEYWORD, default=None, annotation=int | None))
    params += [P(s.name, P.KEYWORD_ONLY, default=P.empty if s.required else s.default, annotation=s.annotation)
               for s in option_specs if s.kw_only]
    signature = inspect.Signature(params)

    def method(self: Model, *args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(self, *args, **kwargs)
        values = dict(bound.arguments)
        values.pop("self")
        texts = values.pop(task.input_name)
        pairs = values.pop(task.pair_name, None) if task.pair_name else None
        return run_task(task, self, texts, pairs, values.pop("batch_tokens", None), **values)

    lines = [task.summary, "", "Parameters (declared once, in the task's Options):"]
    lines += [f"    {s.name}: {s.help}" + (f" (default: {s.describe_default()})" if s.describe_default() else "")
              for s in option_specs]
    lines.append("    batch_tokens: token budget per batch (default: by device)")
    method.__name__ = method.__qualname__ = task.method
    method.__doc__ = (type(task).__doc__ or "").strip() + "\n\n" + "\n".join(lines)
    method.__signature__ = signature  # type: ignore[attr-defined]
    return method
