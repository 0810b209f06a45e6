"""Test a trained DeformConv2dv2 checkpoint: python test_DeformConv2dv2.py --config config/test_DeformConv2dv2.json"""
from utils.cli import test_main

if __name__ == "__main__":
    test_main(model_type=3, script="test_DeformConv2dv2.py")
