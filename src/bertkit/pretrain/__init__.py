"""Masked-LM pre-training blocks: text sources, packing, masking, the objective, evaluation and the unigram baseline.

One module per job: `sources` (documents streamed from files), `packing` (documents to [CLS] ... [SEP]
windows), `masking` (which tokens are hidden, seeded per window and epoch), `objective` (masked
batches, the MLM head on masked rows, the loss), `baseline` (unigram frequencies), `evaluate`
(loss, perplexity, top-1/top-5) and `prepare` (a source to all of these in one pass).

How a training loop uses them:

    data = prepare_data(model.tokenizer, source, max_length=128, limit=model.max_length, seed=seed)
    said = ensure_mlm_head(model.network)            # None, or one line for the user
    masker = Masker.for_tokenizer(model.tokenizer, mask_prob, masking)
    examples = MaskedWindows(data.train, masker, seed)  # plan batches over examples.lengths
    held_out = evaluation_batches(data.eval, masker, seed, max_tokens)
    module = MaskedLM(model.network)                 # what DistributedDataParallel wraps
    for indices in plan:                             # a seeded plan per epoch
        batch = examples.batch(indices, epoch).to(device)
        loss = masked_lm_loss(module(batch), batch.targets, "sum") / masked_tokens_in_the_step
    evaluate_mlm(model.network, held_out, data.baseline)  # {"model": {...}, "unigram": {...}}
"""
from bertkit.pretrain.baseline import UnigramBaseline
from bertkit.pretrain.evaluate import MLMScores, evaluate_mlm, score_batches, score_logits
from bertkit.pretrain.masking import (DEFAULT_MASK_PROB, EVAL_STREAM, MASKING, TRAIN_STREAM, MaskedTokens, Masker,
                                      check_mask_prob, check_masking, window_keys)
from bertkit.pretrain.objective import (MaskedBatch, MaskedLM, MaskedWindows, ensure_mlm_head, evaluation_batches,
                                        masked_batch, masked_lm_loss)
from bertkit.pretrain.packing import (DocumentTokens, TokenWindows, WindowPacker, check_max_length, pack_documents,
                                      tokenize_documents)
from bertkit.pretrain.prepare import DEFAULT_EVAL_FRACTION, PretrainData, check_eval_fraction, prepare_data
from bertkit.pretrain.sources import DocumentCounts, read_documents

__all__ = [
    "DEFAULT_EVAL_FRACTION", "DEFAULT_MASK_PROB", "EVAL_STREAM", "MASKING", "TRAIN_STREAM", "DocumentCounts",
    "DocumentTokens", "MLMScores", "MaskedBatch", "MaskedLM", "MaskedTokens", "MaskedWindows", "Masker",
    "PretrainData", "TokenWindows", "UnigramBaseline", "WindowPacker", "check_eval_fraction", "check_mask_prob",
    "check_masking", "check_max_length", "ensure_mlm_head", "evaluate_mlm", "evaluation_batches", "masked_batch",
    "masked_lm_loss", "pack_documents", "prepare_data", "read_documents", "score_batches", "score_logits",
    "tokenize_documents", "window_keys",
]
