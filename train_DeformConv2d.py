"""Train the DeformConv2d variant: python train_DeformConv2d.py --config config/train_DeformConv2d.json"""
from utils.cli import train_main

if __name__ == "__main__":
    train_main(model_type=2, script="train_DeformConv2d.py")
