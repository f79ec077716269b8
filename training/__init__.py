"""Data and training for SignLens, in two packages that meet at one file format.

    training.curate     WLASL ingest, downloads, edits, the user's clips, dataset building
    training.dataset    the dataset format: what curate writes and finetune reads
    training.finetune   LoRA fine-tuning, evaluation, runs as background processes
    training.layout     every folder and file under the data root, named once
    training.errors     TrainingError and its family (all SignLensErrors: one sentence each)

Both use only the names `engine/__init__.py` exports.
"""
