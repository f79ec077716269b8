"""Curation: from WLASL metadata, downloads and the user's clips to a built dataset.

    wlasl.py       WLASL v0.3 metadata: load, filter, signer-independent splits
    download/      the resumable, polite downloader (runner, fetch, files, manifest)
    importer.py    WLASL videos people already have, brought in by video id
    edits.py       a curator's relabels and exclusions of WLASL clips
    userdata.py    the user's own clips (Upload/Live corrections, Curate recordings)
    plan.py        which clips a DatasetConfig selects
    build.py       trim, crop, write a dataset folder; export it as a zip
    clipcache.py   trimmed clips cached across builds
    stats.py       counts per gloss/split/source/signer, as a table and a plot
    actions.py     Curation: relabel, exclude, restore, accept, preview, download, build
    jobs.py        one background task at a time, with progress and a stop flag

    python -m training.curate --help
"""
