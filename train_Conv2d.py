"""Train the Conv2d model: python train_Conv2d.py --config config/train_Conv2d.json [--set key=value ...]"""
from utils.cli import train_main

if __name__ == "__main__":
    train_main(variant="Conv2d", script="train_Conv2d.py")
