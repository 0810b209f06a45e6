"""Train the Conv2d variant: python train_Conv2d.py --config config/train_Conv2d.json"""
from utils.cli import train_main

if __name__ == "__main__":
    train_main(model_type=1, script="train_Conv2d.py")
