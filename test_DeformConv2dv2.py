"""Test a trained DeformConv2dv2 checkpoint: python test_DeformConv2dv2.py --config config/test_DeformConv2dv2.json [--set key=value ...]"""
from utils.cli import test_main

if __name__ == "__main__":
    test_main(variant="DeformConv2dv2", script="test_DeformConv2dv2.py")
