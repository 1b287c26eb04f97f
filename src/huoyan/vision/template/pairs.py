"""Template/test pairs on disk: DeepPCB's own layout, or a CSV naming the files.

DeepPCB (Tang et al., 2019): ``group<G>/<G>/<id>_test.jpg`` with ``<id>_temp.jpg``
beside it and the annotation in ``group<G>/<G>_not/<id>.txt``, one defect per line,
``x1 y1 x2 y2 type`` (spaces or commas), type 1 open, 2 short, 3 mousebite, 4 spur,
5 (spurious) copper, 6 pin-hole. Its split lists (``trainval.txt``, ``test.txt``) name
``group<G>/<G>/<id>.jpg group<G>/<G>_not/<id>.txt`` per line. The generic layout is a
CSV with a header ``image,template[,annotation]``, paths relative to the CSV's folder;
an annotation's type may be a number (DeepPCB's) or any name.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from huoyan.core.models import IMAGE_SUFFIXES, DefectBox, PairedImage
from huoyan.vision.imageio import read_image

DEEPPCB_TYPES = {1: "open", 2: "short", 3: "mousebite", 4: "spur", 5: "copper", 6: "pin-hole"}
TEST_SUFFIX, TEMPLATE_SUFFIX = "_test", "_temp"


class PairsError(ValueError):
    """A folder, list or CSV of pairs that cannot be read as one."""


@dataclass(frozen=True, slots=True)
class PairFiles:
    image: Path
    template: Path
    annotation: Path | None = None

    @property
    def name(self) -> str:
        return str(self.image)


def read_annotation(path: Path) -> tuple[DefectBox, ...]:
    """The defects annotated in ``path`` (``x1 y1 x2 y2 type`` per line)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise PairsError(f"{path}: cannot read annotation ({exc.strerror or exc})") from exc
    boxes = []
    for n, line in enumerate(text.splitlines(), 1):
        fields = line.replace(",", " ").split()
        if not fields:
            continue
        if len(fields) != 5:
            raise PairsError(f"{path}:{n}: expected 'x1 y1 x2 y2 type', got {line.strip()!r}")
        try:
            x1, y1, x2, y2 = (int(float(v)) for v in fields[:4])
        except ValueError:
            raise PairsError(f"{path}:{n}: box corners must be numbers, got {line.strip()!r}") from None
        kind = fields[4]
        label = DEEPPCB_TYPES.get(int(kind), kind) if kind.isdigit() else kind
        if x2 <= x1 or y2 <= y1:
            raise PairsError(f"{path}:{n}: empty box {x1} {y1} {x2} {y2}")
        boxes.append(DefectBox(x1, y1, x2, y2, label))
    return tuple(boxes)


def _deeppcb_annotation(image: Path, stem: str) -> Path | None:
    folder = image.parent
    candidate = folder.parent / f"{folder.name}_not" / f"{stem}.txt"
    return candidate if candidate.is_file() else None


def find_pairs(root: Path) -> list[PairFiles]:
    """Every ``*_test.*`` image under ``root`` with its ``*_temp.*`` beside it (and its
    DeepPCB annotation, if there is one), sorted; a split list file is read as such."""
    if root.is_file():
        return read_split_list(root)
    if not root.is_dir():
        raise PairsError(f"{root}: no such folder")
    found = []
    for image in sorted(root.rglob(f"*{TEST_SUFFIX}.*")):
        if image.suffix.lower() not in IMAGE_SUFFIXES or any(p.startswith(".") for p in image.relative_to(root).parts):
            continue
        stem = image.stem[: -len(TEST_SUFFIX)]
        template = image.with_name(f"{stem}{TEMPLATE_SUFFIX}{image.suffix}")
        found.append(PairFiles(image, template, _deeppcb_annotation(image, stem)))
    if not found:
        raise PairsError(f"{root}: no pairs (<id>{TEST_SUFFIX}.<ext> with <id>{TEMPLATE_SUFFIX}.<ext> beside it)")
    return found


def read_split_list(path: Path) -> list[PairFiles]:
    """A DeepPCB split list: ``group/G/<id>.jpg group/G_not/<id>.txt`` per line."""
    base = path.parent
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise PairsError(f"{path}:{n}: expected '<image> <annotation>', got {line.strip()!r}")
        named = base / fields[0]
        stem = named.stem
        out.append(
            PairFiles(
                named.with_name(f"{stem}{TEST_SUFFIX}{named.suffix}"),
                named.with_name(f"{stem}{TEMPLATE_SUFFIX}{named.suffix}"),
                base / fields[1],
            )
        )
    if not out:
        raise PairsError(f"{path}: the list names no pairs")
    return out


def read_pairs_csv(path: Path) -> list[PairFiles]:
    """Pairs named in a CSV with columns ``image,template[,annotation]``."""
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise PairsError(f"{path}: cannot read the pairs CSV ({exc})") from exc
    if not rows or not {"image", "template"} <= set(rows[0]):
        raise PairsError(f"{path}: a pairs CSV needs a header with 'image' and 'template' (and 'annotation')")
    base = path.parent
    out = []
    for row in rows:
        if not row.get("image") or not row.get("template"):
            raise PairsError(f"{path}: a row without its image or template: {row}")
        note = (row.get("annotation") or "").strip()
        out.append(
            PairFiles(base / row["image"].strip(), base / row["template"].strip(), base / note if note else None)
        )
    return out


def load_pair(files: PairFiles) -> PairedImage:
    """The pair's images (gray) and annotation; ``ImageError`` or ``PairsError`` names the file."""
    image = read_image(files.image, gray=True)
    template = read_image(files.template, gray=True)
    defects = read_annotation(files.annotation) if files.annotation is not None else ()
    return PairedImage(image=image, template=template, defects=defects, name=files.name)
