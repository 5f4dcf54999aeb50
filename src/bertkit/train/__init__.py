"""Training: the loop (Trainer) and its objectives (Classification), optimisation blocks, metrics and plots."""
from bertkit.train.arguments import EvaluateOptions, TrainArguments
from bertkit.train.batches import BatchStream, Windows, encode_dataset, seed_everything, stratified_subset, window_dataset
from bertkit.train.loop import balanced_class_weights, classification_loss, predict_logits, train_step
from bertkit.train.optim import clip_gradients, linear_warmup_decay, make_optimizer, param_groups, warmup_steps_for
from bertkit.train.recipes import NOTEBOOK_EXAMPLES, demo_finetune, evaluate_model, finetune
from bertkit.train.state import latest_checkpoint, load_training_state, rng_state, save_checkpoint, set_rng_state
from bertkit.train.classifier import Classification
from bertkit.train.objective import Objective
from bertkit.train.reports import report_from_logits
from bertkit.train.trainer import Trainer, TrainConfig, TrainResult

__all__ = [
    "BatchStream", "Classification", "EvaluateOptions", "Objective", "NOTEBOOK_EXAMPLES", "TrainArguments", "TrainConfig", "TrainResult", "Trainer",
    "Windows",
    "balanced_class_weights", "classification_loss", "clip_gradients", "demo_finetune", "encode_dataset", "evaluate_model", "finetune",
    "latest_checkpoint", "linear_warmup_decay", "load_training_state", "make_optimizer", "param_groups",
    "predict_logits", "report_from_logits", "rng_state", "save_checkpoint", "seed_everything",
    "set_rng_state", "stratified_subset", "train_step", "warmup_steps_for", "window_dataset",
]
