"""TensorFlow checkpoints (a SavedModel's variables/, an Object Detection API model.ckpt), checked on the host:
PREFIX.index is a table (LevelDB's format) of BundleEntryProto records, each saying which data shard holds a tensor,
at which offset and how many bytes; the shards PREFIX.data-NNNNN-of-MMMMM hold them back to back. So a missing, short
or long shard, or an index that is not one, is found without TensorFlow."""

import struct
from pathlib import Path

from orchestrator import protowire
from orchestrator.errors import InputError

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER = 48  # two block handles padded to 40 bytes, then the magic
BLOCK_TRAILER = 5  # compression type, crc32c
NO_COMPRESSION = 0


class Unreadable(ValueError):
    pass


def _handle(buf, pos):
    offset, pos = protowire.varint(buf, pos)
    size, pos = protowire.varint(buf, pos)
    return (offset, size), pos


def _block(buf, handle):
    """The entries (key, value) of a table block; None when the block is compressed (not read here)."""
    offset, size = handle
    if offset + size + BLOCK_TRAILER > len(buf) or size < 4:
        raise Unreadable(f"a block at byte {offset} runs past the end")
    if buf[offset + size] != NO_COMPRESSION:
        return None
    data = buf[offset:offset + size]
    restarts = struct.unpack_from("<I", data, size - 4)[0]
    limit = size - 4 - 4 * restarts
    if limit < 0:
        raise Unreadable(f"the block at byte {offset} is corrupt")
    entries, pos, key = [], 0, b""
    while pos < limit:
        shared, pos = protowire.varint(data, pos, limit)
        unshared, pos = protowire.varint(data, pos, limit)
        length, pos = protowire.varint(data, pos, limit)
        if shared > len(key) or pos + unshared + length > limit:
            raise Unreadable(f"the block at byte {offset} is corrupt")
        key = key[:shared] + bytes(data[pos:pos + unshared])
        pos += unshared
        entries.append((key, bytes(data[pos:pos + length])))
        pos += length
    return entries


def read_index(buf):
    """{key: BundleEntryProto bytes} of a checkpoint index's bytes, or None when its blocks are compressed. Raises
    Unreadable."""
    if len(buf) < FOOTER:
        raise Unreadable(f"{len(buf)} bytes, shorter than a table's footer")
    low, high = struct.unpack_from("<II", buf, len(buf) - 8)
    if (high << 32 | low) != TABLE_MAGIC:
        raise Unreadable("no table footer at its end (truncated or not a checkpoint index)")
    try:
        _, pos = _handle(buf, len(buf) - FOOTER)
        index_handle, _ = _handle(buf, pos)
        index = _block(buf, index_handle)
        if index is None:
            return None
        entries = {}
        for _, value in index:
            block = _block(buf, _handle(value, 0)[0])
            if block is None:
                return None
            entries.update(block)
    except protowire.WireError as exc:
        raise Unreadable(str(exc)) from None
    return entries


def _fields(record):
    return {number: value for number, wire, value in protowire.walk(record) if wire == protowire.VARINT}


def shard_ends(index_bytes):
    """(number of data shards, [bytes each shard must hold]) from a checkpoint index's bytes, or None when its blocks
    are compressed (TensorFlow itself then says what is wrong). Raises Unreadable."""
    try:
        entries = read_index(index_bytes)
        if entries is None:
            return None
        shards = _fields(entries.get(b"", b"")).get(1, 1)
        ends = [0] * shards
        for key, record in entries.items():
            if not key:
                continue
            fields = _fields(record)
            shard, end = fields.get(3, 0), fields.get(4, 0) + fields.get(5, 0)
            if shard >= shards:
                raise Unreadable(f"tensor '{key.decode('utf-8', 'replace')}' is in shard {shard} of {shards}")
            ends[shard] = max(ends[shard], end)
    except protowire.WireError as exc:
        raise Unreadable(str(exc)) from None
    return shards, ends


def data_name(prefix_name, i, shards):
    return f"{prefix_name}.data-{i:05d}-of-{shards:05d}"


def shard_problem(size, end, i, shards, index_name):
    """Why a data shard of `size` bytes (None: absent) cannot be shard i of the index, or None."""
    if size is None:
        return f"is missing (shard {i + 1} of {shards} that the checkpoint index {index_name} lists)"
    if size != end:
        return (f"holds {size} bytes but the checkpoint index {index_name} places {end} in it "
                f"({'truncated' if size < end else 'bytes beyond the last tensor'})")
    return None


def unreadable(exc):
    return f"is not a readable TensorFlow checkpoint index: truncated or corrupt ({exc})"


def check(prefix):
    """Check the checkpoint PREFIX (its .index and every data shard it names): raise InputError naming the file at
    fault."""
    prefix = Path(prefix)
    index = Path(f"{prefix}.index")
    if not index.is_file():
        raise InputError(index, "is missing (the checkpoint's index)")
    try:
        found = shard_ends(index.read_bytes())
    except Unreadable as exc:
        raise InputError(index, unreadable(exc)) from None
    if found is None:
        return
    shards, ends = found
    for i, end in enumerate(ends):
        data = prefix.parent / data_name(prefix.name, i, shards)
        why = shard_problem(data.stat().st_size if data.is_file() else None, end, i, shards, index.name)
        if why:
            raise InputError(data, why)
