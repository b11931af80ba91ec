"""The image dataset formats of `spindle data` and `spindle score` against TensorFlow itself:
TensorFlow reads what Spindle writes (tf.data.TFRecordDataset + tf.io.parse_single_example, CIFAR-10
binary through tf.data.FixedLengthRecordDataset, as cifar10_input.py reads it), and Spindle reads
what TensorFlow writes (tf.io.TFRecordWriter, plain and GZIP), both framing checksums included: a
record whose bytes TensorFlow wrote and we then damaged is reported by shard and record, and the
rest of the shard is scored.

The images are synthetic (made-up patterns); the model is the zoo's cifar10 (`spindle zoo`).
Time on 2 shared cores: about 20 s, most of it TensorFlow starting.
"""
import csv
import json
import os
import tempfile
import unittest

import numpy as np
import tensorflow as tf

import harness

FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/class/label": tf.io.FixedLenFeature([], tf.int64),
    "image/format": tf.io.FixedLenFeature([], tf.string),
}


def read_part(path):
    """A Spindle output part as a list of dicts (header names as keys)."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


class Formats(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="spindle-formats-")
        cls.repo = os.path.join(cls.tmp.name, "repo")
        harness.spindle("zoo", "--out", cls.repo, "--models", "cifar10")

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def dir(self, name):
        path = os.path.join(self.tmp.name, self.id().rsplit(".", 1)[-1], name)
        os.makedirs(path, exist_ok=True)
        return path

    def score(self, pattern, out, *extra, check=True):
        summary = os.path.join(out + ".json")
        proc = harness.spindle("score", "--model", "cifar10", "--local", "--repo", self.repo,
                               "--input", pattern, "--output", out, "--quiet", "--top", "2",
                               "--summary", summary, *extra, check=check)
        with open(summary) as f:
            return proc, json.load(f)

    def test_tensorflow_reads_spindle_tfrecord_plain_and_gzip(self):
        for encoding, gzip in (("png", False), ("jpeg", True)):
            out = self.dir(f"{encoding}-{gzip}")
            harness.spindle("data", "tfrecord", "--out", out, "--records", 7, "--shards", 2,
                            "--width", 40, "--height", 30, "--encoding", encoding,
                            *(["--gzip"] if gzip else []))
            files = sorted(os.path.join(out, f) for f in os.listdir(out))
            self.assertEqual(len(files), 2, files)
            dataset = tf.data.TFRecordDataset(files, compression_type="GZIP" if gzip else "")
            labels = []
            for record in dataset:
                example = tf.io.parse_single_example(record, FEATURES)
                image = tf.io.decode_image(example["image/encoded"]).numpy()
                self.assertEqual(image.shape, (30, 40, 3))
                self.assertEqual(example["image/format"].numpy().decode(), encoding.upper())
                labels.append(int(example["image/class/label"]))
            self.assertEqual(len(labels), 7)
            self.assertTrue(all(0 <= label < 10 for label in labels), labels)
            # Spindle reads its own shards back with the same labels, in the same order.
            _, summary = self.score(os.path.join(out, "images-*"), out + "-scores")
            self.assertEqual(summary["records"], 7)
            spindle_labels = []
            for name in ("images-00000-of-00002.tfrecord.tsv", "images-00001-of-00002.tfrecord.tsv"):
                spindle_labels += [int(r["label"]) for r in read_part(os.path.join(out + "-scores", name))]
            self.assertEqual(spindle_labels, labels)

    def test_tensorflow_reads_spindle_cifar10_binary(self):
        out = self.dir("cifar")
        harness.spindle("data", "cifar10", "--out", out, "--records", 20, "--shards", 2)
        files = [os.path.join(out, f"data_batch_{i}.bin") for i in (1, 2)]
        # cifar10_input.py's reader: fixed-length records, label byte, then 3 planes of 32x32.
        dataset = tf.data.FixedLengthRecordDataset(files, record_bytes=1 + 32 * 32 * 3)
        labels, images = [], []
        for record in dataset:
            raw = tf.io.decode_raw(record, tf.uint8)
            labels.append(int(raw[0]))
            images.append(tf.transpose(tf.reshape(raw[1:], [3, 32, 32]), [1, 2, 0]).numpy())
        self.assertEqual(len(labels), 20)
        # The synthetic classes colour their images: records of one class share a mean colour,
        # which would not survive planes read in the wrong order.
        by_class = {}
        for label, image in zip(labels, images):
            by_class.setdefault(label, []).append(image.reshape(-1, 3).mean(axis=0))
        for label, means in by_class.items():
            spread = np.ptp(np.array(means), axis=0)
            self.assertTrue((spread < 25).all(), (label, means))
        _, summary = self.score(os.path.join(out, "data_batch_*"), out + "-scores")
        self.assertEqual(summary["records"], 20)
        self.assertEqual(summary["labelled"], 20)
        spindle_labels = [int(r["label"]) for name in ("data_batch_1.bin.tsv", "data_batch_2.bin.tsv")
                          for r in read_part(os.path.join(out + "-scores", name))]
        self.assertEqual(spindle_labels, labels)

    def tensorflow_shard(self, path, count, options=None):
        """Writes `count` Examples of random 32x32 JPEGs with tf.io.TFRecordWriter; returns the
        labels and each record's byte offset."""
        rng = np.random.default_rng(5)
        labels = [int(x) for x in rng.integers(0, 10, size=count)]
        records = []
        for label in labels:
            image = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
            encoded = tf.io.encode_jpeg(image).numpy()
            example = tf.train.Example(features=tf.train.Features(feature={
                "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
                "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
                "image/format": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"JPEG"])),
            }))
            records.append(example.SerializeToString())
        with tf.io.TFRecordWriter(path, options) as writer:
            for record in records:
                writer.write(record)
        offsets, at = [], 0
        for record in records:
            offsets.append(at)
            at += 16 + len(record)
        return labels, offsets

    def test_spindle_reads_tensorflow_tfrecord_and_checks_its_crcs(self):
        out = self.dir("tf")
        plain = os.path.join(out, "validation-00000-of-00002")
        labels, offsets = self.tensorflow_shard(plain, 6)
        gz = os.path.join(out, "validation-00001-of-00002.gz")
        gz_labels, _ = self.tensorflow_shard(gz, 6, tf.io.TFRecordOptions(compression_type="GZIP"))
        # No extension: Spindle knows the format from the first record's length checksum.
        _, summary = self.score(os.path.join(out, "validation-*"), out + "-scores")
        self.assertTrue(summary["complete"], summary)
        self.assertEqual(summary["records"], 12)
        self.assertEqual(summary["errors"], {})
        for name, expected in (("validation-00000-of-00002.tsv", labels),
                               ("validation-00001-of-00002.tsv", gz_labels)):
            rows = read_part(os.path.join(out + "-scores", name))
            self.assertEqual([int(r["label"]) for r in rows], expected)
            self.assertEqual([int(r["record"]) for r in rows], list(range(6)))

        # TensorFlow's bytes, damaged: record 2's data and record 4's length checksum.
        with open(plain, "rb") as f:
            data = bytearray(f.read())
        data[offsets[2] + 12 + 5] ^= 0x20
        data[offsets[4] + 9] ^= 0x01
        damaged = os.path.join(self.dir("damaged"), "validation-00000-of-00001")
        with open(damaged, "wb") as f:
            f.write(data)
        # TensorFlow itself refuses the damaged file, so the damage is real.
        with self.assertRaises(tf.errors.DataLossError):
            for _ in tf.data.TFRecordDataset([damaged]):
                pass
        _, summary = self.score(damaged, damaged + "-scores", "--format", "tfrecord")
        self.assertEqual(summary["records"], 3, summary)  # records 0, 1 and 3
        self.assertEqual(summary["errors"]["data_crc"]["count"], 1, summary)
        self.assertIn("validation-00000-of-00001:2: bad data checksum",
                      summary["errors"]["data_crc"]["examples"][0])
        self.assertIn("validation-00000-of-00001:4: bad length checksum",
                      summary["errors"]["length_crc"]["examples"][0])
        rows = read_part(os.path.join(damaged + "-scores", "validation-00000-of-00001.tsv"))
        self.assertEqual([int(r["record"]) for r in rows], [0, 1, 3])
        self.assertEqual([int(r["label"]) for r in rows], [labels[0], labels[1], labels[3]])

        # Past --max-errors the job stops, exits non-zero and writes no _SUCCESS.
        proc, summary = self.score(damaged, damaged + "-strict", "--format", "tfrecord",
                                   "--max-errors", "1", check=False)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("--max-errors", proc.stderr)
        self.assertFalse(os.path.exists(os.path.join(damaged + "-strict", "_SUCCESS")))


if __name__ == "__main__":
    unittest.main()
