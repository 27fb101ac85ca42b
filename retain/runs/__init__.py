"""Run directories (`rundir`), atomic files (`files`), safetensors checkpoints (`checkpoint`), progress bars
(`progress`) and seeding (`seed`). Import the submodule you need; only `checkpoint` pulls in torch."""
