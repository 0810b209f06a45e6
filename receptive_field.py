"""What a trained model's output depends on: its effective receptive field (Luo et al., NeurIPS 2016) over test images,
and for a deformable variant its offsets and masks; for one checkpoint or for every finished run of a protocol.

python receptive_field.py --checkpoint result/full/DeformConv2dv2/seed_0/train/weights.pth   (its run's analysis/ folder)
python receptive_field.py --config config/compare_full.json          (every finished run not analysed yet, then the report)
"""
import argparse

from utils.plumbing.errors import UserError, run_cli

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", help="a checkpoint this tool wrote (.pth), e.g. <run>/train/weights.pth")
    which.add_argument("--config", nargs="+", help="compare configs: analyse each protocol's finished runs, then aggregate its report again")
    parser.add_argument("--images", type=int, default=1000, help="the first this many official test images (default 1000)")
    parser.add_argument("--data-dir", default="./data", help="with --checkpoint: folder holding (or receiving: downloaded when missing) "
                        "cifar-10-batches-py (default ./data; $CIFAR10_DIR, when set, wins); a protocol uses its config's")
    parser.add_argument("--device", default="auto", help='"auto" (CUDA when available), "cpu", "cuda" (default auto)')
    args = parser.parse_args()

    def main():
        if not 1 <= args.images <= 10_000:
            raise UserError(f"--images {args.images}: the test set has 10,000 images; pass a number from 1 to 10000")
        from utils.plumbing.config import CompareConfig, load_config

        configs = [load_config(path, CompareConfig) for path in args.config or []]  # checked before torch loads
        from utils.experiments.receptive_field import analyse, analyse_protocol
        from utils.plumbing.runs import RunLayout

        if args.checkpoint:
            run = RunLayout.of_checkpoint(args.checkpoint)
            analyse(args.checkpoint, run, args.data_dir, True, args.images, args.device, verbose=True)
        for cfg in configs:
            analyse_protocol(cfg, args.images, args.device)

    run_cli(main)
