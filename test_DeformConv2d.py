"""Test a trained DeformConv2d checkpoint: python test_DeformConv2d.py --config config/test_DeformConv2d.json [--set key=value ...]"""
from utils.cli import test_main

if __name__ == "__main__":
    test_main(variant="DeformConv2d", script="test_DeformConv2d.py")
