"""Fine-tune by hand from bertkit's training blocks (what bertkit.Trainer does, minus checkpoints and logging)."""
import os

import bertkit
from bertkit.data import load_dataset, stratified_split
from bertkit.train import (BatchStream, encode_dataset, linear_warmup_decay, make_optimizer, predict_logits,
                           seed_everything, stratified_subset, train_step, warmup_steps_for)

size = int(os.environ.get("BERTKIT_EXAMPLE_SIZE", "2000"))  # training examples; tests use a few dozen
generator = seed_everything(42)  # one seed: split, batch order, dropout and the new head's weights
data = load_dataset("rotten_tomatoes")
train, test = stratified_split(data, test_size=0.1, seed=42)
train, test = stratified_subset(train, size, seed=42), stratified_subset(test, max(size // 2, 20), seed=42)

model = bertkit.load(os.environ.get("BERTKIT_EXAMPLE_MODEL", "minilm"))
model.network.add_classifier(dict(enumerate(train.label_names)))  # the head first, then the optimizer sees it
optimizer = make_optimizer(model.network, lr=5e-5, weight_decay=0.01)
batches = BatchStream(encode_dataset(model, train, max_length=128), train.labels, batch_size=32,
                      generator=generator, device=model.device)
epochs = 1
total = epochs * len(batches)
scheduler = linear_warmup_decay(optimizer, warmup_steps_for(total, 0.1), total)

model.network.train()  # dropout on while training
for epoch in range(epochs):
    for step, batch in enumerate(batches.epoch(epoch), 1):
        loss, _ = train_step(model.network, [batch], optimizer, scheduler, max_grad_norm=1.0)
        if step % 20 == 0 or step == total:
            print(f"epoch {epoch + 1} step {step}/{total} loss {loss.item() / batch.num_sequences:.4f}")

test_batches = BatchStream(encode_dataset(model, test, max_length=128), test.labels, batch_tokens=8192,
                           shuffle=False, device=model.device)
logits, test_loss = predict_logits(model.network, test_batches)  # switches to eval mode: no dropout
accuracy = sum(int(p == y) for p, y in zip(logits.argmax(dim=1).tolist(), test.labels)) / len(test)
print(f"accuracy {accuracy:.4f} on {len(test)} held-out reviews (loss {test_loss:.4f})")
