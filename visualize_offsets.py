"""Draw the learned sampling points of a DeformConv2d / DeformConv2dv2 checkpoint on test images.

python visualize_offsets.py --checkpoint result/full/DeformConv2dv2/seed_0/train/weights.pth
"""
import argparse

from utils.plumbing.errors import run_cli

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a checkpoint of a deformable variant (.pth), e.g. <run>/train/weights.pth")
    parser.add_argument("--data-dir", default="./data", help="folder holding (or receiving: downloaded when missing) cifar-10-batches-py "
                        "(default ./data; $CIFAR10_DIR, when set, wins)")
    parser.add_argument("--images", type=int, nargs="+", default=[0, 1, 2, 3], help="test-set indices to draw (default 0 1 2 3)")
    parser.add_argument("--location", type=int, nargs=2, default=None, metavar=("Y", "X"),
                        help="output location on the last deformable layer's grid (default: its centre, 16 16 in the small CNN)")
    parser.add_argument("--out", default=None, help="PNG to write (default: <run>/offsets/offsets_<checkpoint name>.png of the checkpoint's run)")
    parser.add_argument("--summary-images", type=int, default=1000, help="test images for the offset/mask statistics (default 1000)")
    args = parser.parse_args()

    def main():
        from utils.experiments.offsets import visualize
        from utils.plumbing.runs import RunLayout

        out = args.out or RunLayout.of_checkpoint(args.checkpoint).offsets_png(args.checkpoint)
        visualize(args.checkpoint, args.data_dir, True, args.images, args.location and tuple(args.location), out, args.summary_images)

    run_cli(main)
