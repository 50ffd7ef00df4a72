"""Keeping the camera app's gallery in line with its people folder while it runs.

Adding ``people/Ada/1.jpg`` (or removing a person's folder) while the app runs takes effect within a few seconds,
without a restart: :class:`FolderWatcher` compares a cheap signature of the folder (the name, size and modification
time of every file in the identity sub-folders; no file is read) every ``interval`` seconds, and when it changed,
enrols the folder again. Enrolment is incremental (photos already enrolled are recognised by their sha256 and not
embedded again), and the gallery's next search reads only what was added.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from edge_facenet.gallery import EnrollmentReport, Gallery
from edge_facenet.gallery_folder import EnrollingRecognizer

logger = logging.getLogger(__name__)

Signature = frozenset[tuple[str, str, int, int]]


def folder_signature(folder: Path) -> Signature:
    """(identity, file name, size, modification time in ns) of every file in the identity sub-folders.

    Files directly in ``folder`` (such as the gallery database) and hidden entries are left out; a folder that cannot
    be listed contributes nothing.
    """
    entries: set[tuple[str, str, int, int]] = set()
    try:
        identities = [entry for entry in os.scandir(folder) if not entry.name.startswith(".") and entry.is_dir()]
    except OSError:
        return frozenset()
    for identity in identities:
        try:
            with os.scandir(identity.path) as files:
                for file in files:
                    if file.name.startswith("."):
                        continue
                    stat = file.stat()
                    entries.add((identity.name, file.name, stat.st_size, stat.st_mtime_ns))
        except OSError:
            continue
    return frozenset(entries)


class FolderWatcher:
    """Enrols a people folder into a gallery again whenever its files change.

    Args:
        folder: The people folder (``<folder>/<name>/<photo>``), already enrolled into ``gallery`` once.
        gallery: The gallery it fills.
        recognizer: Embeds the photos (see :meth:`Gallery.enroll_folder`).
        interval: Least seconds between two looks at the folder; > 0.
        clock: Seconds, monotonic (for tests).

    Raises:
        ValueError: When ``interval`` is not a positive number.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        gallery: Gallery,
        recognizer: EnrollingRecognizer,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"the watch interval must be a positive number of seconds, got {interval}")
        self.folder = Path(folder)
        self._gallery = gallery
        self._recognizer = recognizer
        self._interval = float(interval)
        self._clock = clock
        self._signature = folder_signature(self.folder)
        self._next_look = clock() + self._interval

    def poll(self) -> EnrollmentReport | None:
        """Look at the folder if ``interval`` has passed, and enrol it again if it changed.

        Returns:
            The enrolment report when the folder was enrolled again, else None. A folder that cannot be enrolled
            (it disappeared, say) is logged as a warning and tried again at the next change.
        """
        now = self._clock()
        if now < self._next_look:
            return None
        self._next_look = now + self._interval
        signature = folder_signature(self.folder)
        if signature == self._signature:
            return None
        self._signature = signature
        try:
            return self._gallery.enroll_folder(self.folder, self._recognizer)
        except (OSError, ValueError) as error:
            logger.warning("cannot enrol %s again: %s", self.folder, str(error).splitlines()[0])
            return None
