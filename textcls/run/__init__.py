"""The run layer: the one place that knows a run directory's layout and how its files are read and written.

    layout.py    every file name as a constant; what makes a folder a run, an ensemble, a step checkpoint
    weights.py   safetensors files written atomically with a sha256; read back against it
    info.py      run.json (version, checksums, base), eval_report.json, config/tokenizer/labels
    members.py   an ensemble's ensemble.json and its member run directories
    store.py     the best weights and `last/` bookkeeping: save_best, stale temp files, step checkpoints
    prepare.py   before training: a new run, a resumed one, or one replacing an old run (overwrite policy)
    load.py      a finished run loaded for use: config, tokenizer, labels, model (adapter bases merged)

It sits above `model/` and `data/` and below `train/`: nothing here imports from `textcls.train`.
"""
