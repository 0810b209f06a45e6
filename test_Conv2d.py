"""Test a trained Conv2d checkpoint: python test_Conv2d.py --config config/test_Conv2d.json [--set key=value ...]"""
from utils.cli import test_main

if __name__ == "__main__":
    test_main(variant="Conv2d", script="test_Conv2d.py")
