"""On the real CIFAR-10 (when ../shared/data exists): each model learns something in one short epoch."""
import json

import pytest
from conftest import make_test_config, make_train_config, needs_real_data, run_script, write_config

pytestmark = [needs_real_data, pytest.mark.slow]


@pytest.mark.parametrize("variant", ["Conv2d", "DeformConv2d", "DeformConv2dv2"])
def test_one_epoch_on_5000_real_images_beats_chance(tmp_path, real_data, variant):
    data = {"data_dir": "./data", "download": True}  # what the shipped configs say: $CIFAR10_DIR wins, nothing is downloaded
    train_cfg = make_train_config(tmp_path, variant, num_epoch=1, train_subset=5000, test_size=0.1, learning_rate=0.001, conv_ch=[64, 128], **data)
    assert run_script("train", variant, write_config(tmp_path / "train.json", train_cfg)) == 0
    # Robustness on a 1,000-image subset: the transforms are tested elsewhere; 10 x 10,000 more images cost ~10 min here.
    test_cfg = make_test_config(tmp_path, epoch=1, batch_size=500, robustness_images=1000, **data)
    assert run_script("test", variant, write_config(tmp_path / "test.json", test_cfg)) == 0
    metrics = json.loads((tmp_path / "run/test/metrics.json").read_text())
    assert metrics["test_images"] == 10_000 and sum(map(sum, metrics["confusion_matrix"])) == 10_000
    assert metrics["accuracy"] > 0.20, metrics["accuracy"]  # chance is 0.10; one epoch on 4,500 images reaches ~0.3
    # The same weights exported to ONNX and run by ONNX Runtime: the same accuracy, to the image.
    from utils.engine.export import export_onnx, verify

    model = export_onnx(tmp_path / "run/train/weights.pth", tmp_path / "model.onnx")
    result = verify(tmp_path / "model.onnx", model, "./data", download=True)
    assert result["images"] == 10_000 and result["max_abs_logit_difference"] <= 1e-4
    # The exported file holds the checkpoint as trained: its BatchNorm statistics, not the test's precise ones.
    assert result["onnxruntime_accuracy"] == result["pytorch_accuracy"] == metrics["as_trained"]["accuracy"]
