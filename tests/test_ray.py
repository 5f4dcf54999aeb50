"""The Ray Data path on a local Ray instance (Ray is pinned in requirements.txt, so these run wherever the tests do)."""
from __future__ import annotations

import builtins
import json

import numpy as np
import pandas as pd
import pytest

import bertkit
from bertkit.cli import main


@pytest.fixture(scope="module")
def ray():
    import ray

    # A small object store: the default takes a third of the machine's memory, which is slower to set up.
    ray.init(num_cpus=2, object_store_memory=100 * 2**20, include_dashboard=False, log_to_driver=False,
             ignore_reinit_error=True)
    yield ray
    ray.shutdown()


def test_ray_embed_equals_local_embed_from_a_named_column(ray, minilm):
    from bertkit.ray_inference import map_dataset

    texts = [f"sentence number {i} about {'rivers' if i % 2 else 'money'}" for i in range(40)]
    dataset = ray.data.from_items([{"id": i, "body": t, "note": "x"} for i, t in enumerate(texts)])
    rows = sorted(map_dataset(dataset, "embed", "minilm", text_column="body", batch_size=16).take_all(),
                  key=lambda r: r["id"])
    got = np.stack([r["embedding"] for r in rows])
    assert [r["id"] for r in rows] == list(range(40)) and rows[0]["note"] == "x"
    assert np.allclose(got, minilm.embed(texts), atol=1e-5)


def test_cli_ray_predict_picks_the_text_column_as_every_path_does(ray, tiny_cls_dir, tmp_path, capsys):
    source = tmp_path / "in.parquet"
    # Not named `text`: the shared picker finds `review`, as it does for files, training and corpus mode.
    pd.DataFrame({"id": range(30), "review": [f"review {i}" for i in range(30)]}).to_parquet(source)
    out = tmp_path / "out"
    assert main(["predict", "--model", str(tiny_cls_dir), "--input", str(source), "--output", str(out),
                 "--ray", "--device", "cpu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 30
    frame = pd.read_parquet(out)
    assert sorted(frame["id"]) == list(range(30)) and frame["predicted_label"].notna().all()
    assert frame.set_index("id")["predicted_label"].tolist() == [r["label"] for r in
                                                                  bertkit.load(tiny_cls_dir).predict(
                                                                      [f"review {i}" for i in range(30)])]
    # A column that is not there: one line naming the flag and the columns, before any actor starts.
    assert main(["predict", "--model", str(tiny_cls_dir), "--input", str(source), "--output", str(tmp_path / "o2"),
                 "--ray", "--text-column", "body", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --text-column is 'body'") and "id, review" in err and err.count("\n") == 1


def test_without_ray_the_message_says_how_to_install_it(monkeypatch):
    from bertkit.errors import BertkitError
    from bertkit.ray_inference import map_dataset

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(BertkitError, match=r"^Ray is not installed; `pip install 'ray\[data\]'`") as e:
        map_dataset(None, "embed")
    assert "\n" not in str(e.value)
