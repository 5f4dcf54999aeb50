"""What a task is: a name, options, the head it needs, and three stages (prepare, step, present) that every front end runs.

A task is declared once, as a subclass of `Task` registered with `bertkit.tasks.register`. From
that declaration come the Model method (`model.embed(...)`), the CLI command with `--json`
(`bertkit embed`), the server endpoint with its OpenAPI schema (`POST /v1/embed`) and, for tasks
that map rows to rows, table files and corpus mode. The stages:

* **prepare** (texts → sequences): the framework checks the rows and tokenizes them once
  (`prepare`); the task turns the encodings into `Item`s, the sequences to run, each carrying
  what its step needs (mask positions, a word's pieces...), plus per-request state for present.
* **step** (a packed `Batch` → one result per sequence): runs on the model thread. Requests whose
  *shared* options are equal are merged into the same batches by the server, so a step may read
  only shared options.
* **present** (sequence results → the answer in the user's shape): per request.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Sequence

from bertkit.errors import BertkitError, OverBudget
from bertkit.inputs import as_text_list, check_pairs, no_tokens_problem, row_problem, warn_truncated
from bertkit.options import specs
from bertkit.table_files import TABLE_OUTPUTS, write_table
from bertkit.tokenizer import Encoding
from bertkit.windows import SAVED, Document, Plan, read_inputs, shift_offsets, split_document

if TYPE_CHECKING:
    import pandas as pd

    from bertkit.batching import Batch
    from bertkit.model import Model


# The most characters one float takes in a JSON answer (Python's repr of a float64, "-1.2345678901234567e-05", and a
# comma), for answer_size estimates.
JSON_NUMBER = 24


def closed(shape: type) -> type:
    """Mark a response TypedDict as having exactly its keys (the server publishes additionalProperties: false)."""
    shape.__pydantic_config__ = {"extra": "forbid"}  # read by pydantic; no import of it needed here
    return shape


@dataclass(frozen=True)
class Head:
    """A head a task needs, and what to tell a user whose checkpoint lacks it."""

    attr: str  # the BertNetwork attribute
    what: str  # "masked-LM head"
    fix: str  # what to do instead, one sentence

    def present_in(self, model: "Model") -> bool:
        return getattr(model.network, self.attr, None) is not None


@dataclass
class Item:
    """One sequence to run through the encoder: its tokens, the input it serves, and what the step reads from it."""

    ids: list[int]
    type_ids: list[int]
    owner: int  # the index of the input (text) this sequence belongs to
    info: Any = None

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class Prepared:
    """A request after prepare: its inputs, their documents (windows) and problems, the sequences to run, state for present."""

    texts: list
    pairs: list | None
    documents: list[Document | None]  # per input; None where the row has a problem
    problems: list[str | None]  # per input: why it was not run (flagged rows only)
    plan: Plan = field(default_factory=Plan)  # the long-document settings in force
    limit: int = 0  # tokens per sequence the model reads
    budget: "Budget" = field(default_factory=lambda: Budget(None))  # what the request may still run
    items: list[Item] = field(default_factory=list)
    state: Any = None

    @property
    def strategy(self) -> str:
        return self.plan.long

    @property
    def encodings(self) -> list[Encoding | None]:
        """Per input, the first (under truncate and head+tail, the only) sequence the model reads."""
        return [d.windows[0] if d is not None else None for d in self.documents]

    @property
    def truncated(self) -> list[int]:
        """Per input, the tokens no sequence holds (0: none; always 0 under chunk)."""
        return [d.unseen if d is not None else 0 for d in self.documents]

    @property
    def windows(self) -> list[int]:
        """Per input, how many sequences the model reads (1 unless chunked)."""
        return [len(d.windows) if d is not None else 0 for d in self.documents]

    def warn(self) -> None:
        warn_truncated(self.truncated, self.limit, [d.unread if d is not None else 0 for d in self.documents])

    @property
    def tokens(self) -> int:
        return sum(len(item) for item in self.items)

    def per_input(self, results: Sequence) -> list[list]:
        """Item results grouped by the input they belong to (empty for flagged rows)."""
        grouped: list[list] = [[] for _ in self.texts]
        for item, result in zip(self.items, results):
            grouped[item.owner].append(result)
        return grouped


class Task:
    """The declaration of one task: every attribute and hook a front end reads, with its default.

    A subclass sets the class attributes that differ and overrides the hooks it needs; nothing else
    is looked for. So this class is the whole contract: what a task is called and takes, what it can
    do besides answering (table files, a plot, extra Model methods, a model of its own), and its
    three stages. Front ends read these names and never ask a task whether it has something.
    """

    # -- what it is (required: `register` refuses a task without them) ----------------------------------
    name: ClassVar[str]  # the CLI command and the endpoint: "fill-mask" -> `bertkit fill-mask`, POST /v1/fill-mask
    method: ClassVar[str]  # the Model method: "fill_mask"
    summary: ClassVar[str]  # one line for --help, the API docs and /docs
    Options: ClassVar[type]  # a dataclass of `bertkit.options.option` fields
    Response: ClassVar[Any] = None  # the JSON payload's type, for the server's published schema
    example: ClassVar[dict] = {}  # a ready-to-send request body for /docs

    # -- what it takes ------------------------------------------------------------------------------------
    head: ClassVar[Head | None] = None  # the head a checkpoint needs (None: the encoder alone)
    input_name: ClassVar[str] = "texts"  # the main input's parameter and request field
    pair_name: ClassVar[str | None] = None  # a second text per text ("pairs"), if the task takes one
    leading: ClassVar[tuple[str, ...]] = ()  # the Model method's first parameters (default: the input)
    min_inputs: ClassVar[int] = 1  # the server's lower bound on the number of texts
    uses_network: ClassVar[bool] = True  # False: no forward pass (tokenize), so no batching or --batch-tokens
    flags_rows: ClassVar[bool] = False  # API answers carry a per-row `error` rather than raising for bad rows
    aggregations: ClassVar[tuple[str, ...]] = ()  # how chunked texts' windows may be combined, the default first
    window_segment: ClassVar[int] = 0  # with pairs, which text long strategies cut (the other stays whole)

    # -- what it can do besides answering (each off unless declared) -----------------------------------
    table: ClassVar[bool] = False  # rows in, rows out: table files (--input/--output), corpus mode, Ray; see `columns`
    output_formats: ClassVar[tuple[str, ...]] = TABLE_OUTPUTS  # table tasks: the --output FILE kinds `write_output` takes
    methods: ClassVar[dict[str, Callable]] = {}  # more Model methods the task installs beside its own: name -> function
    plot_needs: ClassVar[dict[str, Any]] = {}  # options --plot implies (similarity: matrix=True); see `plot`
    server_needs: ClassVar[str] = ""  # what a server must be started with to serve the task (see `server_options`)
    # How to ask for a smaller answer, said when a server refuses one over its --max-answer-bytes.
    smaller_answer: ClassVar[str] = "fewer texts, masks or candidates per mask (top_k), or sentences in a matrix"

    # -- prepare ------------------------------------------------------------------------------------
    def arrange(self, texts: list, pairs: list | None, options: Any) -> tuple[list, list | None]:
        """The (first, second) texts each sequence is made of; a task may reorder them (rerank: query first)."""
        return texts, pairs

    def max_length(self, model: "Model", options: Any) -> int:
        """Tokens kept per sequence, special tokens included."""
        return model.max_length

    def prepare(self, model: "Model", prepared: Prepared, options: Any) -> None:
        """Fill `prepared.items` (and `.state`) from the documents; default: every window of every valid input
        (`info` is the window's number in its document)."""
        prepared.items = [Item(w.ids, w.type_ids, i, k) for i, d in enumerate(prepared.documents) if d is not None
                          for k, w in enumerate(d.windows)]

    # -- step ---------------------------------------------------------------------------------------
    def step(self, model: "Model", batch: "Batch", items: list[Item], options: Any) -> list:
        """One result per sequence of `batch` (`items[b]` is sequence b). Reads only shared options."""
        raise NotImplementedError

    # -- present ------------------------------------------------------------------------------------
    def present(self, model: "Model", prepared: Prepared, results: list, options: Any) -> Any:
        """The answer a Python caller gets, from the results of `prepared.items`."""
        return prepared.per_input(results)

    def payload(self, answer: Any, prepared: Prepared, options: Any) -> Any:
        """The answer as JSON: what `--json` prints and the server returns."""
        return answer

    def human(self, payload: Any, prepared: Prepared) -> str:
        """The answer for a terminal (the command line escapes control characters in it; see bertkit.terminal)."""
        import json

        return json.dumps(payload, ensure_ascii=False, indent=2)

    def answer_size(self, model: "Model", prepared: Prepared, options: Any) -> int:
        """About how many bytes the JSON answer will take, known before any batch runs.

        A server refuses a request whose answer would be too big (--max-answer-bytes) before doing
        the work; tasks whose answer can outgrow their input (candidates per mask, a matrix, a vector
        per text) say so here. The default allows a few numbers per token.
        """
        return 64 * (len(prepared.texts) + prepared.tokens)

    # -- table tasks (`table = True`) -------------------------------------------------------------------
    def columns(self, model: "Model", prepared: Prepared, results: list, options: Any) -> dict[str, list]:
        """Output columns, one value per input row (None where the row was flagged)."""
        raise NotImplementedError(f"{self.name} does not write tables")

    def write_output(self, path: str | Path, table: "pd.DataFrame", text_column: str) -> Path:
        """Write a file run's table (input columns and `columns`) to `path`, one of `output_formats`; returns it."""
        return write_table(table, path)

    def summarize(self, table: "pd.DataFrame") -> dict:
        """The task's own counts after a file run, added to the rows, flagged and truncated counts (predict: labels)."""
        return {}

    def human_summary(self, summary: dict) -> str:
        """The task's line about `summarize`'s counts for a terminal ("": nothing to add)."""
        return ""

    # -- a plot (a task that overrides `plot` draws one: its command takes --plot FILE.png) ---------------
    def plot(self, answer: Any, path: str, options: Any) -> None:
        """Draw the answer (as `present` gave it) to a PNG file."""
        raise NotImplementedError(f"{self.name} draws no plot")

    @property
    def plots(self) -> bool:
        """Whether the task draws its answer (it overrides `plot`)."""
        return type(self).plot is not Task.plot

    # -- the model and the server -------------------------------------------------------------------------
    def model_for(self, options: Any) -> str | None:
        """The model to load when none is given, read from the options (search: the index's); None: the caller's."""
        return None

    @property
    def names_its_model(self) -> bool:
        """Whether the options name the model to load (the task overrides `model_for`): its command needs no --model."""
        return type(self).model_for is not Task.model_for

    def server_options(self, settings: Any) -> dict | None:
        """Options a server fixes for every request from its own settings (search: the index); None: it cannot serve
        this task as started (the reason is `server_needs`)."""
        return {}

    # -- facts derived from the declaration -----------------------------------------------------
    @property
    def option_names(self) -> list[str]:
        return [s.name for s in specs(self.Options)]

    def shared_options(self, options: Any) -> dict[str, Any]:
        """The options requests must agree on to share batches."""
        return {s.name: getattr(options, s.name) for s in specs(self.Options) if s.shared}

    def available(self, model: "Model") -> bool:
        return self.head is None or self.head.present_in(model)

    def require_head(self, model: "Model") -> None:
        if not self.available(model):
            raise BertkitError(missing_head_message(self, model))

    def undeclared(self) -> list[str]:
        """The required declarations this task lacks (`register` refuses it while any is missing)."""
        return [attr for attr in REQUIRED if not getattr(self, attr, None)]

    def __repr__(self) -> str:
        return f"<task {self.name}>"


REQUIRED = ("name", "method", "summary", "Options")  # what every task must declare


def missing_head_message(task: Task, model: "Model") -> str:
    return f"{model.source or model.folder} has no {task.head.what}; {task.head.fix}"


# -- running a task ---------------------------------------------------------------------------------
def make_options(task: Task, values: dict[str, Any]) -> Any:
    unknown = sorted(set(values) - set(task.option_names))
    if unknown:
        raise BertkitError(f"{task.method}() got unknown option(s) {', '.join(unknown)}; "
                           f"it takes {', '.join(task.option_names) or 'no options'}")
    return task.Options(**values)


@dataclass
class Budget:
    """Tokens a request may run (None: no bound), spent as its sequences are planned, before they are built."""

    most: int | None
    spent: int = 0

    def spend(self, tokens: int) -> None:
        self.spent += tokens
        if self.most is not None and self.spent > self.most:
            raise OverBudget(self.spent, self.most)


def prepare(task: Task, model: "Model", texts: Any, pairs: Any, options: Any, flag: bool | None = None,
            max_tokens: int | None = None) -> Prepared:
    """Check the inputs, tokenize them once, and let the task build its sequences.

    With `flag` (default: the task's `flags_rows`), a row that is missing, not a string, blank or
    without any token is kept and flagged in `problems` instead of failing the call; otherwise a
    row that is not a string is an error naming it. With `max_tokens`, a request whose sequences
    would hold more tokens stops with OverBudget as soon as that is known, before they are built.
    """
    task.require_head(model)
    flag = task.flags_rows if flag is None else flag
    texts = [texts] if isinstance(texts, str) else list(texts)
    if pairs is not None:
        pairs = [pairs] * len(texts) if isinstance(pairs, str) else list(pairs)
        check_pairs(len(texts), pairs, task.pair_name or "pairs")
    if flag:
        problems = [row_problem(t, "text") or (row_problem(pairs[i], "pair") if pairs is not None else None)
                    for i, t in enumerate(texts)]
    else:
        as_text_list(texts, task.input_name)
        if pairs is not None:
            as_text_list(pairs, task.pair_name or "pairs")
        problems = [None] * len(texts)
    valid = [i for i, p in enumerate(problems) if p is None]
    plan = Plan.of(options, model.config.extra.get(SAVED), task.aggregations, task.name)
    firsts, seconds = task.arrange([texts[i] for i in valid], [pairs[i] for i in valid] if pairs is not None else None,
                                   options)
    tokens = limit(task, model, options, plan)
    budget = Budget(max_tokens)
    found = documents(model, firsts, seconds, tokens, plan, task.window_segment, budget.spend)
    docs: list[Document | None] = [None] * len(texts)
    for i, doc in zip(valid, found):
        problem = no_tokens_problem(doc.windows[0]) if flag else None
        if problem:
            problems[i] = problem
        else:
            docs[i] = doc
    prepared = Prepared(texts, pairs, docs, problems, plan, tokens, budget)
    task.prepare(model, prepared, options)
    return prepared


def limit(task: Task, model: "Model", options: Any, plan: Plan) -> int:
    """Tokens per sequence: the task's limit, within the window the model was trained on unless a length was asked for."""
    own = task.max_length(model, options)
    if plan.window and getattr(options, "max_length", None) is None:
        return min(own, plan.window)
    return own


def documents(model: "Model", texts: list[str], pairs: list[str] | None, limit: int, plan: Plan,
              segment: int = 0, spend: Callable[[int], None] | None = None) -> list[Document]:
    """Tokenize once and cut each text into the sequences its long-document plan asks for (bertkit.windows).

    Only what the plan keeps is read of a long text (bertkit.windows.read_text): memory per text is
    bounded by its window, not by its length.
    """
    tok = model.tokenizer
    segment = segment if pairs is not None else 0
    windowed, whole = (texts, pairs) if segment == 0 else (pairs, texts)
    readings, others = read_inputs(tok.count_tokens, windowed, whole, plan, limit)
    read = [r.text for r in readings]
    read_whole = None if others is None else [r.text for r in others]
    read_texts, read_pairs = (read, read_whole) if segment == 0 else (read_whole, read)
    if plan.long == "truncate" and plan.side == "right":  # the tokenizer's own truncation: what every release did
        found = tok.encode_batch(read_texts, read_pairs, max_length=limit)
        if spend is not None:
            spend(sum(len(e) for e in found))
        docs = []
        for e, *parts in zip(found, readings, *([others] if others else [])):
            e.n_truncated += sum(r.gap_tokens or 0 for r in parts)  # what the tokenizer never saw, counted
            docs.append(Document([e], [0], e.n_truncated, unread=sum(r.unread for r in parts)))
        return docs
    specials = tok.special_tokens
    return [split_document(shift_offsets(full, r, segment), limit, plan, tok.cls_id, tok.sep_id,
                           specials["cls_token"], specials["sep_token"], segment, spend, r)
            for full, r in zip(tok.encode_batch(read_texts, read_pairs), readings)]


def execute(task: Task, model: "Model", prepared: Prepared, options: Any, batch_tokens: int | None = None) -> list:
    """Run the step over every sequence of `prepared`, in token-budget batches; results in item order."""
    if not task.uses_network or not prepared.items:
        return [None] * len(prepared.items)
    return run_items(task, model, prepared.items, options, batch_tokens)


def run_items(task: Task, model: "Model", items: list[Item], options: Any, batch_tokens: int | None = None) -> list:
    """The step over any sequences (one request's, or several merged by the server), one result per item."""
    return model.run(items, lambda batch: task.step(model, batch, [items[i] for i in batch.index], options), batch_tokens)


def run_task(task: Task, model: "Model", texts: Any, pairs: Any = None, batch_tokens: int | None = None,
             **options: Any) -> Any:
    """The whole task for a Python caller: options checked, inputs prepared, batches run, answer presented."""
    opts = make_options(task, options)
    prepared = prepare(task, model, texts, pairs, opts)
    prepared.warn()
    results = execute(task, model, prepared, opts, batch_tokens)
    return task.present(model, prepared, results, opts)
