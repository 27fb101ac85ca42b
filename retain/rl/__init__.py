"""The outer loop: RL that teaches the model what to write into memory (`retain rl`, docs/rl.md).

- `lora`: the inner loop, batched: G fresh LoRA adapters trained in one forward pass.
- `episode`: fresh sessions, sampled self-edits, and their rewards (recall after the write).
- `algorithms`: group advantages, the ReST-EM filter, the policy losses.
- `run`: `RLConfig` and the loop; `report`: plots and report.md.
"""
