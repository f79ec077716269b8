"""The WLASL downloader: `download_instances` runs it (see `runner`); the rest are its parts."""

from training.curate.download.config import DownloadConfig
from training.curate.download.runner import DownloadSummary, download_instances

__all__ = ["DownloadConfig", "DownloadSummary", "download_instances"]
