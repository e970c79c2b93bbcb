"""Download with an md5 check; a clear error where the network is unreachable."""

from __future__ import annotations

import hashlib
import urllib.request
from pathlib import Path

from ..errors import DataError
from ..io import atomic_write


def md5sum(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, destination: Path, md5: str) -> Path:
    """Fetch `url` to `destination` atomically and check its md5; nothing is left behind on failure."""

    def fetch(tmp: str) -> None:
        with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            while block := response.read(1 << 20):
                out.write(block)
        actual = md5sum(Path(tmp))
        if actual != md5:
            raise DataError(f"download of {url} has md5 {actual}, expected {md5}; the file is corrupt or not the "
                            "official one.")

    try:
        atomic_write(destination, fetch)
    except OSError as error:
        raise DataError(f"could not download {url} ({error}); put the file at {destination} by hand.") from None
    return destination
