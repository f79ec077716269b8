"""Fine-tuning and evaluation on a built dataset (`training.dataset` is all it reads of curation).

    config.py      FinetuneConfig: the settings, from YAML + --set
    train.py       finetune(): TRL SFTTrainer + PEFT LoRA into a run folder
    collator.py    ClipCollator: batches built with the engine's own prompt code
    evaluate.py    evaluate(): base vs adapter report (top-1/top-5, confusions, latency)
    metrics.py     the metrics, pure functions
    records.py     the published results a report is shown beside (assets/wlasl/records.yml)
    run_folder.py  the files a run writes, and their readers
    runs.py        RunManager: runs and evaluations as background processes

    python -m training.finetune --help
    python -m training.evaluate --help
"""
