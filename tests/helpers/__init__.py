"""What the test modules share, as plain functions (fixtures stay in tests/conftest.py):

- `configs`: composing real configs (`make_cfg`), the shrunk `TINY` run, small residual models
  (`RESMLP`, `RESNET`), the repository's folder.
- `data`: the offline MNIST originals (`torchvision_root`), a synthetic table (`people`), small
  random tensors (`table_data`, `image_batch`).
- `engine`: a lone run's stack around a model (`stack_of`) and training it (`train_epochs`); small
  stacks to step by hand (`linear_stack`, `step`, `small_stack`), copies of a member and of an average.
- `models`: the small built-in models the model and dropout tests build (`build`, `count`).
- `syncs`: `HostSyncs`, which records every call that would make the host wait for a GPU.
- `cli`: the `regbench` console script in a subprocess, started (`start`) or run (`regbench`),
  and a process that holds folders' locks.
- `rundirs`: run folders: their metrics.csv rows and result.json files; a fake result.json.
- `interrupt`: stopping a run at an epoch (Ctrl-C in-process, SIGKILL of a subprocess).
- `compare`: a stack's members against their lone runs, bit for bit or within tolerance.
"""
