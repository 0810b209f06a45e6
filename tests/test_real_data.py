"""On the real CIFAR-10 (when ../shared/data exists): each model learns something in one short epoch."""
import json

import pytest

from conftest import REAL_DATA, make_test_config, make_train_config, run_script, write_config

pytestmark = pytest.mark.skipif(not (REAL_DATA / "cifar-10-batches-py").exists(), reason="real CIFAR-10 not present")


@pytest.mark.parametrize("model_type", [1, 2, 3])
def test_one_epoch_on_5000_real_images_beats_chance(tmp_path, model_type):
    data = {"data_dir": str(REAL_DATA), "download": False, "conv_ch": [64, 128]}
    train_cfg = make_train_config(tmp_path, model_type, num_epoch=1, train_subset=5000, test_size=0.1, learning_rate=0.001, batch_size=32, **data)
    assert run_script("train", model_type, write_config(tmp_path / "train.json", train_cfg)) == 0
    test_cfg = make_test_config(tmp_path, model_type, epoch=1, batch_size=500, **data)
    assert run_script("test", model_type, write_config(tmp_path / "test.json", test_cfg)) == 0
    metrics = json.loads((tmp_path / "run/test/metrics.json").read_text())
    assert metrics["test_images"] == 10_000
    assert metrics["accuracy"] > 0.20, metrics["accuracy"]  # chance is 0.10
