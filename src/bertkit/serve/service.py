"""The served tasks: check a request against the model, queue it for batching, shape the answer like the CLI's --json."""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from bertkit.serve.batcher import Batcher, Worker
from bertkit.serve.errors import ServeError
from bertkit.serve.metrics import Metrics
from bertkit.serve.settings import Settings

if TYPE_CHECKING:
    from bertkit.model import Model
    from bertkit.tokenizer import Encoding


class Service:
    """One loaded model behind per-task batchers and a single model thread; owns readiness and draining."""

    def __init__(self, model: "Model", settings: Settings | None = None) -> None:
        self.model = model
        self.settings = settings or Settings()
        self.max_batch_tokens = self.settings.max_batch_tokens or model.default_batch_tokens
        self.worker = Worker()
        self.ready = False
        self.draining = False
        self.in_flight = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self.metrics = Metrics(self.queue_depths, lambda: self.in_flight, lambda: self.draining)
        runs = {"embed": self._run_embed, "similarity": self._run_word_vectors,
                "fill-mask": self._run_fill_mask, "predict": self._run_predict}
        self.batchers = {
            name: Batcher(name, run, self.worker, self.max_batch_tokens, self.settings.max_wait_ms / 1000,
                          self.settings.batching, self.settings.max_queue, self.metrics.observe_batch)
            for name, run in runs.items()
        }

    # -- lifecycle --------------------------------------------------------------------------------
    async def startup(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.settings.warmup:  # the first forward pass is slow; pay for it before saying ready
            await self.worker.call(self.model.embed, ["warm up"])
        self.ready = True

    def request_drain(self) -> None:
        """Start draining from a signal handler or another thread; the work itself runs on the event loop."""
        self.draining = True
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.begin_drain)

    def begin_drain(self) -> None:
        """Stop being ready, refuse new requests, and run queued work at once instead of waiting to fill batches."""
        self.draining = True
        for b in self.batchers.values():
            b.flush()

    async def shutdown(self) -> None:
        self.begin_drain()
        for b in self.batchers.values():
            await b.close()
        self.worker.close()

    def queue_depths(self) -> dict[str, int]:
        return {name: b.depth for name, b in self.batchers.items()}

    # -- what this model can do -------------------------------------------------------------------
    def available(self) -> dict[str, bool]:
        heads = self.model.network
        return {"tokenize": True, "embed": True, "similarity": True,
                "fill-mask": heads.mlm_head is not None, "predict": heads.classifier is not None}

    def require(self, task: str) -> None:
        if self.available()[task]:
            return
        missing = {"fill-mask": "masked-LM head", "predict": "classifier head"}[task]
        serves = ", ".join(f"/v1/{t}" for t, ok in self.available().items() if ok)
        raise ServeError(400, "unsupported_task",
                         f"the loaded model ({self.model.source or self.model.folder}) has no {missing}, so /v1/{task} "
                         f"cannot be served; it serves {serves}. Start the server with a model that has one.")

    def embed_max_length(self, requested: int | None = None) -> int:
        from bertkit.tasks.embeddings import embed_max_length

        return embed_max_length(self.model, requested)

    def info(self) -> dict:
        m, sentence = self.model, self.model.sentence_config
        return {
            "model": m.source, "folder": str(m.folder) if m.folder else None, "device": str(m.device),
            "parameters": m.num_parameters(), "heads": list(m.network.heads), "labels": list(m.labels),
            "max_length": m.max_length, "sentence_transformers": sentence or None, "config": m.config.to_dict(),
            "endpoints": {f"/v1/{t}": ok for t, ok in self.available().items()},
            "limits": self.settings.public() | {"max_batch_tokens": self.max_batch_tokens},
            "embedding": {"dim": m.config.hidden_size, "max_length": self.embed_max_length(),
                          "pooling": sentence.get("pooling", "mean"), "normalize": bool(sentence.get("normalize", False))},
        }

    # -- endpoints --------------------------------------------------------------------------------
    async def tokenize(self, req: Any) -> list[dict]:
        pairs = [req.pair] * len(req.texts) if req.pair is not None else None
        encodings = await self._encode(req.texts, pairs, req.max_length)
        if req.max_length is not None:
            self._check_truncation("tokenize", "texts", encodings, req.max_length, req.truncate)
        return [{"text": t, **e.to_dict()} for t, e in zip(req.texts, encodings)]

    async def embed(self, req: Any) -> dict:
        from bertkit.tasks.embeddings import embeddings_payload

        self.require("embed")
        limit = self.embed_max_length(req.max_length)
        encodings = await self._encode(req.texts, None, limit)
        cut = self._check_truncation("embed", "texts", encodings, limit, req.truncate)
        options = {"pooling": req.pooling, "normalize": req.normalize, "max_length": req.max_length}
        rows = await self._submit("embed", req.texts, options, encodings)
        return embeddings_payload(np.stack(rows)) | {"truncated": cut}

    async def predict(self, req: Any) -> list[dict]:
        self.require("predict")
        if req.pairs is not None and len(req.pairs) != len(req.texts):
            raise ServeError(422, "invalid_request", f"got {len(req.texts)} texts but {len(req.pairs)} pairs; give one pair per text")
        encodings = await self._encode(req.texts, req.pairs, self.model.max_length)
        self._check_truncation("predict", "texts", encodings, self.model.max_length, req.truncate)
        items = list(zip(req.texts, req.pairs or [None] * len(req.texts)))
        options = {"threshold": req.threshold, "paired": req.pairs is not None}
        rows = await self._submit("predict", items, options, encodings)
        return [{"text": t, **r} for t, r in zip(req.texts, rows)]

    async def fill_mask(self, req: Any) -> list[dict]:
        self.require("fill-mask")
        limit = self.model.max_length
        encodings = await self._encode(req.texts, None, limit)
        cut = self._check_truncation("fill-mask", "texts", encodings, limit, req.truncate)
        # A text without a mask would fail its whole merged batch; refuse it before it gets there.
        tok = self.model.tokenizer
        for i, (text, enc) in enumerate(zip(req.texts, encodings)):
            if tok.mask_id not in enc.ids:
                why = (f"is longer than {limit} tokens and its {tok.mask_token} was cut off; shorten it"
                       if enc.n_truncated and tok.mask_token in text else
                       f"has no {tok.mask_token} token; put {tok.mask_token} where a word should be predicted")
                raise ServeError(422, "invalid_input", f"texts[{i}] {why}")
        options = {"top_k": req.top_k, "targets": req.targets}
        results = await self._submit("fill-mask", req.texts, options, encodings)
        return [{"text": t, "masks": r, "truncated": n} for t, r, n in zip(req.texts, results, cut)]

    async def similarity(self, req: Any) -> dict:
        from bertkit.tasks.word_similarity import SimilarityMatrix, WordSimilarity, check_layer, cosine, locate

        self.require("similarity")
        n = len(req.sentences)
        if not req.matrix and n != 2:
            raise ServeError(422, "invalid_request", f"got {n} sentences; give exactly two, or send \"matrix\": true to compare them all")
        words = [req.word] * n if isinstance(req.word, str) else list(req.word)
        occurrences = [req.occurrence] * n if isinstance(req.occurrence, int) else list(req.occurrence)
        for name, values in (("word", words), ("occurrence", occurrences)):
            if len(values) != n:
                raise ServeError(422, "invalid_request", f"got {len(values)} values for {name} and {n} sentences; "
                                 f"give {name} once, or once per sentence")
        limit = self.model.max_length
        encodings = await self._encode(req.sentences, None, limit)
        cut = self._check_truncation("similarity", "sentences", encodings, limit, req.truncate)
        # Checked here, with the task's own rules, so a missing word fails this request and no neighbour.
        check_layer(req.layer, self.model.config.num_hidden_layers)
        for s, e, w, o in zip(req.sentences, encodings, words, occurrences):
            locate(self.model.tokenizer, s, e, w, o, limit)
        items = list(zip(req.sentences, words, occurrences))
        vectors = await self._submit("similarity", items, {"pooling": req.pooling, "layer": req.layer}, encodings)
        if not req.matrix:
            return WordSimilarity(cosine(vectors[0].vector, vectors[1].vector), vectors[0], vectors[1]).to_dict() | {"truncated": cut}
        return SimilarityMatrix.of(vectors).to_dict() | {"truncated": cut}

    # -- shared steps ---------------------------------------------------------------------------
    async def _encode(self, texts: Sequence[str], pairs: Sequence[str] | None, limit: int | None) -> list["Encoding"]:
        # Off the event loop: a request of many long texts takes milliseconds to tokenize.
        return await asyncio.to_thread(self.model.tokenizer.encode_batch, texts, pairs, max_length=limit)

    def _check_truncation(self, task: str, field: str, encodings: list["Encoding"], limit: int, truncate: bool) -> list[int]:
        cut = [e.n_truncated for e in encodings]
        over = [i for i, n in enumerate(cut) if n]
        if over and not truncate:
            i = over[0]
            raise ServeError(422, "text_too_long",
                             f"{field}[{i}] has {len(encodings[i]) + cut[i]} tokens but {limit} fit"
                             + (f" ({len(over)} texts are too long)" if len(over) > 1 else "")
                             + "; shorten it, or send \"truncate\": true to have it cut and flagged")
        if over:
            self.metrics.truncated.inc(len(over), endpoint=f"/v1/{task}")
        return cut

    async def _submit(self, task: str, items: list, options: dict, encodings: list["Encoding"]) -> list:
        from bertkit.serve.batcher import Closed, Overloaded

        try:
            return await self.batchers[task].submit(items, options, sum(len(e) for e in encodings))
        except Overloaded as e:
            raise ServeError(503, "overloaded", str(e), {"Retry-After": "1"}) from None
        except Closed as e:
            raise ServeError(503, "shutting_down", str(e)) from None

    # -- model-thread work: each takes the merged items of several requests -------------------------
    def _run_embed(self, texts: list[str], o: dict) -> list[np.ndarray]:
        return list(self.model.embed(texts, pooling=o["pooling"], normalize=o["normalize"],
                                     batch_tokens=self.max_batch_tokens, max_length=o["max_length"]))

    def _run_predict(self, items: list[tuple[str, str | None]], o: dict) -> list[dict]:
        texts = [t for t, _ in items]
        pairs = [p for _, p in items] if o["paired"] else None
        return self.model.predict(texts, pairs, threshold=o["threshold"], batch_tokens=self.max_batch_tokens)

    def _run_fill_mask(self, texts: list[str], o: dict) -> list:
        return self.model.fill_mask(texts, top_k=o["top_k"], targets=o["targets"], batch_tokens=self.max_batch_tokens)

    def _run_word_vectors(self, items: list[tuple[str, str, int]], o: dict) -> list:
        from bertkit.tasks.word_similarity import word_vectors

        sentences, words, occurrences = (list(x) for x in zip(*items))
        return word_vectors(self.model, sentences, words, occurrences, o["pooling"], o["layer"], self.max_batch_tokens)
