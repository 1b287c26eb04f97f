"""Golden templates for a station whose model compares each part with its own.

The recipe's ``templates`` rule names each part's template file; this library reads it
(with the recipe's preprocessing, so template and part share one geometry) and keeps
the most recently used ones decoded, keyed by path, size and modification time so that
a template replaced on disk is read again. A part whose template is missing, unreadable
or does not fit gets an ERROR record that says which file and why.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from huoyan.core.recipe import Preprocess, Templates
from huoyan.station import preprocess
from huoyan.vision.imageio import decode_image

CACHED = 64  # decoded templates kept (a 640 px gray template is 400 kB)


class TemplateError(ValueError):
    """A part's template cannot be found or read."""


class TemplateLibrary:
    def __init__(self, rule: Templates, cfg: Preprocess) -> None:
        self.rule = rule
        self.cfg = cfg
        self._cache: OrderedDict[tuple[str, int, int], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def for_part(self, part_name: str) -> np.ndarray:
        try:
            path = self.rule.template_for(part_name)
        except ValueError as exc:
            raise TemplateError(str(exc)) from None
        try:
            stat = path.stat()
        except OSError as exc:
            raise TemplateError(f"{part_name}: no template {path} ({exc.strerror or exc})") from None
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
        template = self._read(path)
        with self._lock:
            self._cache[key] = template
            while len(self._cache) > CACHED:
                self._cache.popitem(last=False)
        return template

    def _read(self, path: Path) -> np.ndarray:
        try:
            data = path.read_bytes()
            return preprocess.apply(decode_image(data, str(path), self.cfg.max_image_pixels), self.cfg)
        except (OSError, ValueError) as exc:
            raise TemplateError(f"template {path}: {exc}") from None
