"""The cost study (benchmark.py): models.py times each model and its layers and writes the report (report.py);
op.py times the deformable op alone and says where a layer's time goes; sweep.py and sweep_report.py measure and
draw the cost curves of one layer."""
