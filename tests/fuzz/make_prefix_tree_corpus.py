#!/usr/bin/env python3
"""Writes the seed corpus of prefix_tree_fuzz into tests/fuzz/corpus/prefix_tree/.

Every byte string is a valid input (tests/prefix_tree/tree_ops.h, ByteChoices); these
seeds only make sure the fuzzer starts from every configuration. An input begins with the
configuration ConfigFromChoices reads, one byte per choice (the seed two bytes):
  block size index (1, 2, 4, 16), max prompt blocks - 1, pool size - 4, vocab - 2,
  hash (0 xxh3, 1 all-collide, 2 two-keys), enabled (0 means disabled), hash seed (2 bytes)
followed by the operations: a byte choosing each operation, then its own choices.
Deterministic: rerun it after changing the decoding.
  python3 tests/fuzz/make_prefix_tree_corpus.py
"""
import os
import random

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "prefix_tree")

# (name, block size index, max prompt blocks - 1, pool - 4, vocab - 2, hash, enabled)
CONFIGS = [
    ("b1_xxh3", 0, 15, 40, 1, 0, 1),
    ("b4_xxh3", 2, 7, 60, 1, 0, 1),
    ("b16_xxh3", 3, 6, 90, 0, 0, 1),
    ("b4_tight", 2, 5, 8, 0, 0, 1),
    ("b1_collide", 0, 15, 40, 1, 1, 1),
    ("b4_collide", 2, 7, 60, 1, 1, 1),
    ("b2_two_keys", 1, 9, 40, 0, 2, 1),
    ("b16_two_keys", 3, 6, 90, 0, 2, 1),
    ("b4_disabled", 2, 7, 60, 1, 0, 0),
]


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = random.Random(20240611)
    for name, bs, max_blocks, pool, vocab, hash_mode, enabled in CONFIGS:
        header = bytes([bs, max_blocks, pool, vocab, hash_mode, enabled, rng.randrange(256),
                        rng.randrange(256)])
        body = bytes(rng.randrange(256) for _ in range(rng.choice([256, 512, 1024])))
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(header + body)


if __name__ == "__main__":
    main()
