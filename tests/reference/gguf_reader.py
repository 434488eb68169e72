"""A small GGUF reader, independent of loom and of gguf-py (stdlib + numpy only).

It follows the published layout (ggml docs/gguf.md), version 3, little-endian:

    magic b"GGUF", u32 version, u64 tensor_count, u64 metadata_kv_count,
    metadata: string key, u32 value type, value
              (string = u64 length + bytes; array = u32 type + u64 count + items),
    tensor infos: string name, u32 n_dims, u64 ne[n_dims], u32 ggml type, u64 offset,
    zero padding to general.alignment, then the data section.

GgufFile(path) parses everything and validates it: magic and version, known value and tensor
types, unique keys and names, a power-of-two alignment, every offset aligned, tensors not
overlapping and inside the file, row lengths whole blocks. Any defect raises GgufError.
tensor(name) returns the values as float32 in row-major shape (reversed ne), dequantizing
Q8_0 and Q4_0 blocks.

Usage as a script: gguf_reader.py FILE prints the metadata and tensor table.
"""
import struct
import sys

import numpy as np

VALUE_TYPES = {0: "u8", 1: "i8", 2: "u16", 3: "i16", 4: "u32", 5: "i32", 6: "f32", 7: "bool", 8: "string",
               9: "array", 10: "u64", 11: "i64", 12: "f64"}
SCALARS = {"u8": "<B", "i8": "<b", "u16": "<H", "i16": "<h", "u32": "<I", "i32": "<i", "f32": "<f", "bool": "<?",
           "u64": "<Q", "i64": "<q", "f64": "<d"}
# ggml type id: (name, values per block, bytes per block)
GGML_TYPES = {0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 8: ("Q8_0", 32, 34)}
Q8_0_BLOCK = np.dtype([("d", "<f2"), ("qs", "i1", (32,))])
Q4_0_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])


class GgufError(Exception):
    pass


class TensorInfo:
    def __init__(self, name, ne, type_id, offset, offset_pos):
        self.name, self.ne, self.type_id, self.offset = name, ne, type_id, offset
        self.offset_pos = offset_pos  # where the offset field sits in the file (for fault injection)
        self.type, self.block_values, self.block_bytes = GGML_TYPES[type_id]
        self.shape = tuple(reversed(ne))  # row-major
        self.rows = int(np.prod(ne[1:])) if len(ne) > 1 else 1
        self.nbytes = self.rows * (ne[0] // self.block_values) * self.block_bytes


class GgufFile:
    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            self.data = f.read()
        self.pos = 0
        self.kv, self.kv_types, self.tensors = {}, {}, {}
        self._parse()

    # ---- primitive reads --------------------------------------------------------------------
    def _take(self, n):
        if self.pos + n > len(self.data):
            raise GgufError(f"{self.path}: unexpected end of file at byte {self.pos} (wanted {n} more)")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def _scalar(self, kind):
        fmt = SCALARS[kind]
        return struct.unpack(fmt, self._take(struct.calcsize(fmt)))[0]

    def _string(self):
        n = self._scalar("u64")
        if n > len(self.data):
            raise GgufError(f"{self.path}: string length {n} at byte {self.pos - 8} exceeds the file")
        raw = self._take(n)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise GgufError(f"{self.path}: string at byte {self.pos - n} is not UTF-8: {e}")

    def _value(self, type_id):
        if type_id not in VALUE_TYPES:
            raise GgufError(f"{self.path}: unknown metadata value type {type_id} at byte {self.pos - 4}")
        kind = VALUE_TYPES[type_id]
        if kind == "string":
            return self._string()
        if kind == "array":
            item_type = self._scalar("u32")
            count = self._scalar("u64")
            if item_type == 9:
                raise GgufError(f"{self.path}: nested arrays are not produced by loom")
            return [self._value(item_type) for _ in range(count)], item_type
        return self._scalar(kind)

    # ---- structure ----------------------------------------------------------------------------
    def _parse(self):
        if self._take(4) != b"GGUF":
            raise GgufError(f"{self.path}: bad magic (expected b'GGUF')")
        self.version = self._scalar("u32")
        if self.version != 3:
            raise GgufError(f"{self.path}: version {self.version}, expected 3")
        n_tensors, n_kv = self._scalar("u64"), self._scalar("u64")
        if n_tensors > len(self.data) or n_kv > len(self.data):
            raise GgufError(f"{self.path}: implausible counts ({n_tensors} tensors, {n_kv} keys)")
        for _ in range(n_kv):
            key = self._string()
            if key in self.kv:
                raise GgufError(f"{self.path}: metadata key {key!r} appears twice")
            type_id = self._scalar("u32")
            value = self._value(type_id)
            if VALUE_TYPES.get(type_id) == "array":
                value, item_type = value
                self.kv_types[key] = ("array", VALUE_TYPES.get(item_type))
            else:
                self.kv_types[key] = VALUE_TYPES[type_id]
            self.kv[key] = value
        self.alignment = self.kv.get("general.alignment", 32)
        if "general.alignment" in self.kv and self.kv_types["general.alignment"] != "u32":
            raise GgufError(f"{self.path}: general.alignment must be u32")
        if self.alignment <= 0 or self.alignment & (self.alignment - 1):
            raise GgufError(f"{self.path}: general.alignment {self.alignment} is not a power of two")
        for _ in range(n_tensors):
            name = self._string()
            if name in self.tensors:
                raise GgufError(f"{self.path}: tensor {name!r} appears twice")
            n_dims = self._scalar("u32")
            if not 1 <= n_dims <= 4:
                raise GgufError(f"{self.path}: tensor {name!r} has {n_dims} dimensions")
            ne = tuple(self._scalar("u64") for _ in range(n_dims))
            type_id = self._scalar("u32")
            if type_id not in GGML_TYPES:
                raise GgufError(f"{self.path}: tensor {name!r} has unsupported ggml type {type_id}")
            offset_pos = self.pos
            offset = self._scalar("u64")
            info = TensorInfo(name, ne, type_id, offset, offset_pos)
            if any(d == 0 for d in ne) or ne[0] % info.block_values:
                raise GgufError(f"{self.path}: tensor {name!r} ne {ne} is not whole {info.type} blocks")
            if offset % self.alignment:
                raise GgufError(f"{self.path}: tensor {name!r} offset {offset} is not a multiple of {self.alignment}")
            self.tensors[name] = info
        self.data_start = -(-self.pos // self.alignment) * self.alignment
        if any(self.data[self.pos:self.data_start]):
            raise GgufError(f"{self.path}: padding before the data section is not zero")
        end = 0
        for info in sorted(self.tensors.values(), key=lambda t: t.offset):
            if info.offset < end:
                raise GgufError(f"{self.path}: tensor {info.name!r} at {info.offset} overlaps the previous one (ends {end})")
            end = info.offset + info.nbytes
        self.data_end = self.data_start + end
        if self.data_end > len(self.data):
            raise GgufError(f"{self.path}: the data section needs {self.data_end} bytes, the file has {len(self.data)}")

    # ---- tensors ------------------------------------------------------------------------------
    def raw(self, name):
        info = self.tensors[name]
        start = self.data_start + info.offset
        return self.data[start:start + info.nbytes]

    def tensor(self, name):
        info = self.tensors[name]
        raw = self.raw(name)
        if info.type == "F32":
            values = np.frombuffer(raw, dtype="<f4")
        elif info.type == "F16":
            values = np.frombuffer(raw, dtype="<f2").astype(np.float32)
        elif info.type == "Q8_0":
            blocks = np.frombuffer(raw, dtype=Q8_0_BLOCK)
            values = blocks["d"].astype(np.float32)[:, None] * blocks["qs"].astype(np.float32)
        else:  # Q4_0: byte j holds value j (low nibble) and value j + 16 (high nibble)
            blocks = np.frombuffer(raw, dtype=Q4_0_BLOCK)
            nibbles = np.concatenate([blocks["qs"] & 0x0F, blocks["qs"] >> 4], axis=1).astype(np.int32) - 8
            values = blocks["d"].astype(np.float32)[:, None] * nibbles.astype(np.float32)
        return np.ascontiguousarray(values, dtype=np.float32).reshape(info.shape)

    def block_scales(self, name):
        """Per-block d (as float32) of a Q8_0 / Q4_0 tensor, shape [rows, ne0 / 32]."""
        info = self.tensors[name]
        block = Q8_0_BLOCK if info.type == "Q8_0" else Q4_0_BLOCK
        d = np.frombuffer(self.raw(name), dtype=block)["d"].astype(np.float32)
        return d.reshape(info.rows, info.ne[0] // 32)


def main(argv):
    f = GgufFile(argv[1])
    print(f"GGUF v{f.version}: {len(f.kv)} keys, {len(f.tensors)} tensors, data at {f.data_start}, "
          f"alignment {f.alignment}, {len(f.data)} bytes")
    for key, value in f.kv.items():
        shown = f"[{len(value)} items]" if isinstance(value, list) else repr(value)
        print(f"  {key} ({f.kv_types[key]}): {shown}")
    for info in f.tensors.values():
        print(f"  {info.name:32s} {info.type:5s} ne={list(info.ne)} offset={info.offset}")


if __name__ == "__main__":
    main(sys.argv)
