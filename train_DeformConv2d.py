"""Train the DeformConv2d model: python train_DeformConv2d.py --config config/train_DeformConv2d.json [--set key=value ...]"""
from utils.cli import train_main

if __name__ == "__main__":
    train_main(variant="DeformConv2d", script="train_DeformConv2d.py")
