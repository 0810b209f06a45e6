"""Train the DeformConv2dv2 variant: python train_DeformConv2dv2.py --config config/train_DeformConv2dv2.json"""
from utils.cli import train_main

if __name__ == "__main__":
    train_main(model_type=3, script="train_DeformConv2dv2.py")
