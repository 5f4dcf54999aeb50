"""The Ray Data path on a local Ray instance; skipped where Ray is not installed."""
from __future__ import annotations

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield
    ray.shutdown()


def test_ray_embed_equals_local_embed(local_ray):
    import bertkit
    from bertkit.ray_inference import map_dataset

    texts = [f"sentence number {i} about {'rivers' if i % 2 else 'money'}" for i in range(40)]
    dataset = ray.data.from_items([{"id": i, "text": t} for i, t in enumerate(texts)])
    rows = sorted(map_dataset(dataset, "embed", "minilm", batch_size=16).take_all(), key=lambda r: r["id"])
    got = np.stack([r["embedding"] for r in rows])
    want = bertkit.load("minilm", device="cpu").embed(texts)
    assert [r["id"] for r in rows] == list(range(40))
    assert np.allclose(got, want, atol=1e-5)


def test_cli_ray_predict_writes_every_row(local_ray, tiny_cls_dir, tmp_path, capsys):
    import json

    import pandas as pd

    from bertkit.cli import main

    source = tmp_path / "in.parquet"
    pd.DataFrame({"id": range(30), "text": [f"review {i}" for i in range(30)]}).to_parquet(source)
    out = tmp_path / "out"
    assert main(["predict", "--model", str(tiny_cls_dir), "--input", str(source), "--output", str(out),
                 "--ray", "--device", "cpu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 30
    frame = pd.read_parquet(out)
    assert sorted(frame["id"]) == list(range(30)) and frame["predicted_label"].notna().all()
