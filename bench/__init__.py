"""Benchmarks of spacenav_perception (`spacenav bench`).

- ``model_bench``: the full predictors (core preprocess + model + postprocess) per model,
  engine (TorchScript / torch.export / ONNX Runtime) and device, on rendered frames; on CUDA
  also model-only fp16 / fp32 throughput.
- ``node_bench``: end-to-end latency of the nodes across processes over DDS (beside a
  passthrough node), and an overload run (200 Hz) with the node's resident memory.
- ``runner``: runs both, prints the table, writes the JSON.
- ``models``: which model files are benchmarked (shipped ones, else untrained exports).
- ``frames``: the rendered input frames.

This package lives in the source tree (not installed); the CLI imports it from
``spacenav_perception.paths.SOURCE_ROOT / 'bench'``. See bench/RESULTS.md.
"""
