"""Train the DeformConv2dv2 model: python train_DeformConv2dv2.py --config config/train_DeformConv2dv2.json [--set key=value ...]"""
from utils.cli import train_main

if __name__ == "__main__":
    train_main(variant="DeformConv2dv2", script="train_DeformConv2dv2.py")
