# Types of the C chunk encoder in _chunks.c (see its header comment).

import numpy as np

def encode_chunks(
    ts: np.ndarray, vals: np.ndarray, bounds: np.ndarray, /
) -> tuple[list[bytes], list[bytes]]: ...
def decode_chunks(
    ts_blobs: list[bytes], val_blobs: list[bytes], /
) -> tuple[bytes, bytes, bytes]: ...
