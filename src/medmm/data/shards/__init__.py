"""Packed datasets: any registered dataset written once into WebDataset tar shards, read back lazily.

* `pack.pack_samples` / `pack.pack_dataset`: decode and resize every image once (medmm's own
  readers and `transforms`), write the samples of each split into tar shards in the WebDataset
  layout (``<key>.json`` + ``<key>.img0.npy`` ...), with a per-shard sha256, counts and the bad
  samples counted per split in ``index.json``. Packing is resumable: finished shards are kept.
* `read.load_split`: the `shards` registered dataset, a `samples.PackedSamples`: a lazy sequence
  holding 20 bytes per sample (where its record lies in the shard summary) that builds a Sample
  when indexed. Samples carry a `ShardImage` (a small, lazy array: tar path + byte offset)
  instead of pixels, so a split of any size costs a few megabytes per process and the engine's
  map-style, seeded, resumable sampler works unchanged.

See docs/shards.md for why WebDataset and why map-style random access.
"""

from medmm.data.shards.records import ShardImage

__all__ = ["ShardImage"]
