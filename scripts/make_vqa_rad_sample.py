"""Build the bundled VQA-RAD sample (src/medmm/data/bundled/vqa_rad_sample/) from the full copy.

    python scripts/make_vqa_rad_sample.py [--src ../shared/data/vqa_rad] [--n-images 102]

VQA-RAD is CC0 1.0, so this subset may ship inside the package. It keeps the ORIGINAL layout
(``VQA_RAD Dataset Public.json`` + ``VQA_RAD Image Folder/``) so the ``vqa_rad`` loader reads
it unchanged. Images: an equal number per organ (HEAD / CHEST / ABD), drawn with a fixed seed
from the sorted image names; resized so the longer side is at most 256 px (PIL bicubic) and
saved as JPEG quality 85. QA: every training record (freeform/para) of the chosen images,
byte-for-byte the original fields. Running it twice gives identical files.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
from collections import defaultdict
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SRC = REPO.parent / "shared" / "data" / "vqa_rad"
DEFAULT_OUT = REPO / "src" / "medmm" / "data" / "bundled" / "vqa_rad_sample"
JSON_NAME = "VQA_RAD Dataset Public.json"
IMAGE_DIR = "VQA_RAD Image Folder"
ORGANS = ("HEAD", "CHEST", "ABD")
TRAIN_PHRASES = {"freeform", "para"}
README = """VQA-RAD sample bundled with medmm (made by scripts/make_vqa_rad_sample.py).

{n_images} of the 315 VQA-RAD images ({per_organ}), resized to at most 256 px on the longer side
and re-encoded as JPEG quality 85, with all {n_qa} of their official TRAINING question-answer
records (phrase_type freeform/para) copied unchanged. No official test QA is included.
Original file layout: "{json_name}" + "{image_dir}/".

License: CC0 1.0 (public-domain dedication) of the VQA-RAD OSF release, https://osf.io/89kps/
Citation: Lau JJ, Gayen S, Ben Abacha A, Demner-Fushman D. A dataset of clinically generated
visual questions and answers about radiology images. Scientific Data 5, 180251 (2018).
doi:10.1038/sdata.2018.251
"""


def choose_images(records: list[dict], n_images: int, seed: int) -> list[str]:
    """An equal number of training images per organ, drawn with a fixed seed."""
    by_organ: dict[str, set[str]] = defaultdict(set)
    for rec in records:
        if rec["phrase_type"] in TRAIN_PHRASES:
            by_organ[str(rec["image_organ"]).strip().upper()].add(rec["image_name"])
    rng = random.Random(seed)
    per_organ = n_images // len(ORGANS)
    chosen: list[str] = []
    for organ in ORGANS:
        names = sorted(by_organ[organ] - set(chosen))
        chosen += rng.sample(names, per_organ)
    return sorted(chosen)


def shrink(src: Path, dst: Path, max_side: int, quality: int) -> None:
    """Resize so the longer side is <= max_side and save as baseline JPEG."""
    with Image.open(src) as im:
        im = im.convert("L") if im.mode in ("L", "LA", "I;16") else im.convert("RGB")
        scale = max_side / max(im.size)
        if scale < 1:
            im = im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.BICUBIC)
        im.save(dst, format="JPEG", quality=quality, optimize=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=DEFAULT_SRC)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--n-images", type=int, default=102)
    ap.add_argument("--max-side", type=int, default=256)
    ap.add_argument("--quality", type=int, default=85)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    records = json.loads((args.src / JSON_NAME).read_text(encoding="utf-8"))
    chosen = choose_images(records, args.n_images, args.seed)
    keep = set(chosen)
    qa = [r for r in records if r["image_name"] in keep and r["phrase_type"] in TRAIN_PHRASES]

    if args.out.exists():
        shutil.rmtree(args.out)
    (args.out / IMAGE_DIR).mkdir(parents=True)
    for name in chosen:
        shrink(args.src / IMAGE_DIR / name, args.out / IMAGE_DIR / name, args.max_side, args.quality)
    (args.out / JSON_NAME).write_text(json.dumps(qa, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    organs = defaultdict(set)
    for r in qa:
        organs[str(r["image_organ"]).strip().upper()].add(r["image_name"])
    per_organ = ", ".join(f"{o} {len(organs[o])}" for o in ORGANS)
    (args.out / "README.txt").write_text(
        README.format(
            n_images=len(chosen), per_organ=per_organ, n_qa=len(qa), json_name=JSON_NAME, image_dir=IMAGE_DIR
        ),
        encoding="utf-8",
    )
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"{len(chosen)} images ({per_organ}), {len(qa)} QA, {size / 1e6:.2f} MB -> {args.out}")


if __name__ == "__main__":
    main()
