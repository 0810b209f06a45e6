"""Export a trained checkpoint to ONNX (deformable layers as standard DeformConv nodes, opset 19) and, with
--verify, run the 10,000 test images through ONNX Runtime and PyTorch and compare.

python export_onnx.py --checkpoint result/full/DeformConv2dv2/seed_0/train/weights.pth --out dcnv2.onnx --verify
"""
import argparse

from utils.plumbing.errors import run_cli

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a checkpoint this tool wrote (.pth), e.g. <run>/train/weights.pth")
    parser.add_argument("--out", required=True, help="the .onnx file to write (its folder must exist)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    parser.add_argument("--verify", action="store_true", help="compare ONNX Runtime with PyTorch on the 10,000 test images")
    parser.add_argument("--data-dir", default="./data", help="folder holding (or receiving: downloaded when missing) cifar-10-batches-py, "
                        "for --verify (default ./data; $CIFAR10_DIR, when set, wins)")
    parser.add_argument("--batch-size", type=int, default=500, help="images per ONNX Runtime call in --verify (default 500)")
    args = parser.parse_args()

    def main():
        from utils.engine.export import check_output_path, export_onnx, verify

        check_output_path(args.out, args.overwrite)  # before torch loads: a bad path answers at once
        model = export_onnx(args.checkpoint, args.out, args.overwrite)
        if args.verify:
            verify(args.out, model, args.data_dir, args.batch_size, download=True)

    run_cli(main)
