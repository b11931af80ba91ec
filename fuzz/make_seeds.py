#!/usr/bin/env python3
"""Writes the seed corpus, fuzz/corpus/TARGET/NAME: a handful of valid requests per target for
the stand-in models of fuzz/src/lib.rs (CIFAR-10, Inception v3, criteo_ctr, "mixed").

Seeds named refused_* are inputs every stand-in must refuse; all others must be answered
(server/tests/fuzz_corpus.rs checks both). The seeds are committed; run this only to change them. Needs Pillow for the images (run it
with .cache/tritonvenv/bin/python, which has it). Protobufs are written by hand (a few lines of
wire format) so no generated modules or TensorFlow are needed.
"""

import base64
import io
import json
import os
import struct
import sys

from PIL import Image

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")

ROW = ("1\t5\t110\t\t16\t\t1\t0\t14\t7\t1\t\t306\t\t62770d79\te21f5d58\tafea442f\t945c7fcf"
       "\t38b02748\t6fcd6dcb\t3580aa21\t28808903\t46dedfa6\t2e027dc1\t0c7c4231\t95981d1f"
       "\t00c5ffb7\tbe4ee537\t8a0b74cc\t4cdc3efa\td20856aa\tb8170bba\t9512c20b\tc38e2f28"
       "\t14f65a5d\t25b1b089\td7c1fc0b\t7caf609c\t30436bfc\ted10571d")
UNLABELLED = ROW.split("\t", 1)[1]

# The first id of each feature's slice of the default features.toml's id space
# (FeatureSpec::criteo_default: 13 integers of 20 boundaries, 26 categoricals of twice the
# column's cardinality clamped to 4..2^17 buckets, 3 crosses of 2^16).
CARDINALITIES = [1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683, 8351593,
                 3194, 27, 14992, 5461306, 10, 5652, 2173, 4, 7046547, 18, 15, 286181, 105,
                 142572]
SIZES = [22] * 13 + [min(max(c * 2, 4), 1 << 17) + 1 for c in CARDINALITIES] + [1 << 16] * 3
IDS = [sum(SIZES[:i]) + i % 3 for i in range(len(SIZES))]


def write(target, name, data):
    os.makedirs(os.path.join(ROOT, target), exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(ROOT, target, name), "wb") as f:
        f.write(data)


def image(fmt, size=(8, 6), mode="RGB"):
    img = Image.new(mode, size)
    for x in range(size[0]):
        for y in range(size[1]):
            v = (x * 37 + y * 11) % 256
            img.putpixel((x, y), v * 257 if mode == "I;16" else
                         (v if mode == "L" else (v, 255 - v, (v * 3) % 256)))
    out = io.BytesIO()
    img.save(out, fmt)
    return out.getvalue()


# protobuf wire format
def varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(number, wire, payload):
    return varint(number << 3 | wire) + payload


def lenf(number, data):
    if isinstance(data, str):
        data = data.encode()
    return field(number, 2, varint(len(data)) + data)


def intf(number, n):
    return field(number, 0, varint(n))


def packed(number, values, fmt=None):
    body = b"".join(struct.pack(fmt, v) if fmt else varint(v) for v in values)
    return lenf(number, body)


def kserve_input(name, datatype, shape, contents=b""):
    msg = lenf(1, name) + lenf(2, datatype) + packed(3, shape)
    return msg + (lenf(5, contents) if contents else b"")


def kserve_param(key, value):
    return lenf(1, key) + lenf(2, value)


def tf_tensor(dtype, dims, body):
    shape = b"".join(lenf(2, intf(1, d)) for d in dims)
    return intf(1, dtype) + lenf(2, shape) + body


def tf_input(name, tensor):
    return lenf(2, lenf(1, name) + lenf(2, tensor))


PNG = image("PNG")
JPEG = image("JPEG", (16, 12))
GRAY_PNG = image("PNG", (5, 7), "L")
PNG16 = image("PNG", (4, 4), "I;16")

MIXED_INSTANCE = {"x": [[1.5, -2.0], [3.0, 4.0]], "n": [1, 2, 3], "s": ["hello"],
                  "b": [True, False]}


def main():
    # v2 JSON
    write("v2_json", "mixed.json", json.dumps({
        "id": "r1", "parameters": {"timeout": 1000000, "binary_data_output": False},
        "inputs": [
            {"name": "x", "shape": [1, 2, 2], "datatype": "FP32",
             "data": [[[1.0, 2.0], [3.0, 4.5]]]},
            {"name": "n", "shape": [1, 3], "datatype": "INT32", "data": [1, 2, 3]},
            {"name": "s", "shape": [1, 1], "datatype": "BYTES", "data": ["hello"]},
            {"name": "b", "shape": [1, 2], "datatype": "BOOL", "data": [True, False]}],
        "outputs": [{"name": "y", "parameters": {"classification": 2}},
                    {"name": "k", "parameters": {"binary_data": True}}, {"name": "label"}]}))
    write("v2_json", "criteo_rows.json", json.dumps({"inputs": [
        {"name": "ids", "shape": [2], "datatype": "BYTES", "data": [ROW, UNLABELLED]}]}))
    write("v2_json", "criteo_ids.json", json.dumps({"inputs": [
        {"name": "ids", "shape": [1, len(IDS)], "datatype": "INT64", "data": IDS}]}))
    write("v2_json", "cifar10_tensor.json", json.dumps({"inputs": [
        {"name": "images", "shape": [1, 24, 24, 3], "datatype": "FP32",
         "data": [0] * (24 * 24 * 3)}],
        "outputs": [{"name": "probabilities", "parameters": {"classification": 3}}]},
        separators=(",", ":")))

    # v2 binary: 2-byte little-endian header length, JSON header, raw tensors
    def binary(header, tensors):
        h = json.dumps(header, separators=(",", ":")).encode()
        return struct.pack("<H", len(h)) + h + b"".join(tensors)

    s = struct.pack("<I", 2) + b"hi"
    write("v2_binary", "mixed.bin", binary({"inputs": [
        {"name": "x", "shape": [1, 2, 2], "datatype": "FP32",
         "parameters": {"binary_data_size": 16}},
        {"name": "n", "shape": [1, 3], "datatype": "INT32", "parameters": {"binary_data_size": 12}},
        {"name": "s", "shape": [1, 1], "datatype": "BYTES",
         "parameters": {"binary_data_size": len(s)}},
        {"name": "b", "shape": [1, 2], "datatype": "BOOL", "parameters": {"binary_data_size": 2}}],
        "parameters": {"binary_data_output": True}},
        [struct.pack("<4f", 1, float("nan"), -3, 4), struct.pack("<3i", 7, -8, 9), s, b"\x01\x00"]))
    for name, img in [("png", PNG), ("jpeg", JPEG)]:
        element = struct.pack("<I", len(img)) + img
        write("v2_binary", f"image_{name}.bin", binary({"inputs": [
            {"name": "images", "shape": [1], "datatype": "BYTES",
             "parameters": {"binary_data_size": len(element)}}]}, [element]))
    rows = b"".join(struct.pack("<I", len(r)) + r.encode() for r in [ROW, UNLABELLED])
    write("v2_binary", "criteo_rows.bin", binary({"inputs": [
        {"name": "ids", "shape": [2, 1], "datatype": "BYTES",
         "parameters": {"binary_data_size": len(rows)}}]}, [rows]))

    # TF Serving REST
    write("tf_rest", "mixed_rows.json", json.dumps({"instances": [MIXED_INSTANCE]}))
    write("tf_rest", "mixed_columns.json", json.dumps({
        "signature_name": "serving_default",
        "inputs": {k: [v] for k, v in MIXED_INSTANCE.items()}}))
    write("tf_rest", "image_b64.json", json.dumps(
        {"instances": [{"b64": base64.b64encode(PNG).decode()}]}))
    write("tf_rest", "image_columns.json", json.dumps(
        {"inputs": [{"b64": base64.b64encode(JPEG).decode()}]}))
    write("tf_rest", "criteo_rows.json", json.dumps({"instances": [ROW, UNLABELLED]}))

    # KServe v2 gRPC ModelInferRequest
    write("grpc_v2", "mixed_contents.pb",
          lenf(1, "mixed") + lenf(3, "req-1")
          + lenf(4, lenf(1, "timeout") + lenf(2, intf(2, 1000000)))
          + lenf(5, kserve_input("x", "FP32", [1, 1, 2], packed(6, [0.5, -1.0], "<f")))
          + lenf(5, kserve_input("n", "INT32", [1, 3], packed(2, [1, 2, 3])))
          + lenf(5, kserve_input("s", "BYTES", [1, 1], lenf(8, b"abc")))
          + lenf(5, kserve_input("b", "BOOL", [1, 2], packed(1, [1, 0])))
          + lenf(6, lenf(1, "y") + lenf(2, kserve_param("classification", intf(2, 1)))))
    write("grpc_v2", "mixed_raw.pb",
          lenf(1, "mixed")
          + lenf(5, kserve_input("x", "FP32", [1, 1, 2]))
          + lenf(5, kserve_input("n", "INT32", [1, 3]))
          + lenf(5, kserve_input("s", "BYTES", [1, 1]))
          + lenf(5, kserve_input("b", "BOOL", [1, 2]))
          + lenf(7, struct.pack("<2f", 1.0, float("inf")))
          + lenf(7, struct.pack("<3i", 1, 2, 3))
          + lenf(7, struct.pack("<I", 1) + b"z")
          + lenf(7, b"\x00\x01"))
    write("grpc_v2", "image_raw.pb",
          lenf(1, "cifar10") + lenf(5, kserve_input("images", "BYTES", [1]))
          + lenf(7, struct.pack("<I", len(PNG)) + PNG))
    write("grpc_v2", "criteo_rows.pb",
          lenf(1, "criteo_ctr")
          + lenf(5, kserve_input("ids", "BYTES", [2], lenf(8, ROW) + lenf(8, UNLABELLED))))

    # TF Serving gRPC PredictRequest
    spec = lenf(1, lenf(1, "mixed") + lenf(3, "serving_default"))
    write("grpc_tfserving", "mixed_typed.pb", spec
          + tf_input("x", tf_tensor(1, [1, 1, 2], packed(5, [0.5, 2.0], "<f")))
          + tf_input("n", tf_tensor(3, [1, 3], packed(7, [4, 5, 6])))
          + tf_input("s", tf_tensor(7, [1, 1], lenf(8, b"word")))
          + tf_input("b", tf_tensor(10, [1, 2], packed(11, [0, 1])))
          + lenf(3, "y"))
    write("grpc_tfserving", "mixed_content.pb", spec
          + tf_input("x", tf_tensor(1, [1, 2, 2], lenf(4, struct.pack("<4f", 1, 2, 3, 4))))
          + tf_input("n", tf_tensor(3, [1, 3], lenf(4, struct.pack("<3i", 1, 2, 3))))
          + tf_input("s", tf_tensor(7, [1, 1], lenf(8, b"")))
          + tf_input("b", tf_tensor(10, [1, 2], lenf(4, b"\x01\x01"))))
    write("grpc_tfserving", "image.pb", lenf(1, lenf(1, "inception_v3"))
          + tf_input("images", tf_tensor(7, [1], lenf(8, JPEG))))
    write("grpc_tfserving", "criteo_ids.pb", lenf(1, lenf(1, "criteo_ctr"))
          + tf_input("ids", tf_tensor(9, [1, len(IDS)], packed(10, IDS))))

    # images
    write("image", "rgb.png", PNG)
    write("image", "rgb.jpeg", JPEG)
    write("image", "gray.png", GRAY_PNG)
    write("image", "sixteen_bit.png", PNG16)
    write("image", "refused_truncated.jpeg", JPEG[: len(JPEG) // 2])

    # Criteo rows
    write("criteo_rows", "rows.tsv", "\n".join([ROW, UNLABELLED, ROW + "\r"]) + "\n")
    write("criteo_rows", "refused_short.tsv", "0\t1\t2\n\n1" + "\t" * 38 + "\n")
    write("criteo_rows", "refused_bad_token.tsv", ROW.replace("62770d79", "6277zz79") + "\n")

    # config.toml
    for name, text in CONFIGS.items():
        write("config_toml", name + ".toml", text)

    # features.toml
    write("features_toml", "small.toml", features(boundaries=[0, 1, 4, 16], buckets=50,
                                                  cross=[("C1", "C2", 64), ("I1", "C6", 32)]))
    write("features_toml", "no_cross.toml", features(boundaries=[-5, 0, 5], buckets=3, cross=[]))


def features(boundaries, buckets, cross):
    lines = []
    total = 0
    for i in range(1, 14):
        lines += ["[[integer]]", f'name = "I{i}"', f"boundaries = {boundaries}", ""]
        total += len(boundaries) + 2
    for i in range(1, 27):
        lines += ["[[categorical]]", f'name = "C{i}"', f"hash_buckets = {buckets}", ""]
        total += buckets + 1
    for a, b, n in cross:
        lines += ["[[cross]]", f'name = "{a}_x_{b}"', f'features = ["{a}", "{b}"]',
                  f"hash_buckets = {n}", ""]
        total += n
    return f"id_space = {total}\n\n" + "\n".join(lines)


CONFIGS = {
    "cifar10": """name = "cifar10"
max_batch_size = 128
[[inputs]]
name = "images"
dtype = "FP32"
dims = [-1, 24, 24, 3]
preprocess = "cifar10_image"
[[outputs]]
name = "probabilities"
dtype = "FP32"
dims = [-1, 10]
""",
    "full": """name = "ranker-v2"
max_batch_size = 64
preferred_batch_sizes = [8, 32]
max_queue_delay = "2ms"
max_queue_size = 256
instance_count = 2
intra_op_threads = 1
engine = "tract"
require_success_marker = true

[version_policy]
latest = 2

[[inputs]]
name = "dense"
dtype = "FP64"
dims = [-1, -1]

[[inputs]]
name = "ids"
dtype = "INT64"
dims = [-1, 39]
preprocess = "criteo_rows"

[[outputs]]
name = "score"
dtype = "FP32"
dims = [-1, 1]
""",
    "unbatched": """name = "unbatched"
max_batch_size = 0
[[inputs]]
name = "x"
dtype = "UINT8"
dims = [2, 2]
[[outputs]]
name = "y"
dtype = "BOOL"
dims = [3]
""",
}


if __name__ == "__main__":
    sys.exit(main())
