"""spindle import tf's TensorFlow side, run by the Python the user names (--python,
SPINDLE_TF_PYTHON or python3). Spindle embeds this file and writes it into the import's temp dir.

    python import_tf.py REQUEST.json

The request says what to load (a SavedModel directory or a TF1 checkpoint prefix), which signature
or tensors, the opset and the verification batch. This program:

1. loads the model and reads its signature (names, dtypes, shapes), refusing one without a batch
   dimension;
2. converts it to ONNX with tf2onnx (refusing ops tf2onnx leaves unconverted), its inputs and
   outputs named as the signature names them;
3. runs one random batch through TensorFlow and writes the inputs and TensorFlow's outputs as raw
   little-endian files, for Spindle to run through its own engine and compare.

It answers in WORKDIR/result.json: {"ok": true, ...} or {"ok": false, "kind": K, "message": M}
with a message that names what was wrong and what to do. Exit code 0 either way; anything else
is a crash whose traceback Spindle shows.
"""
import json
import logging
import os
import sys
from collections.abc import Mapping

# Spindle's names for the element types it serves, by numpy dtype name.
DTYPES = {"float32": "FP32", "float64": "FP64", "int32": "INT32", "int64": "INT64",
          "uint8": "UINT8", "int8": "INT8", "int16": "INT16", "bool": "BOOL"}


class ImportRefused(Exception):
    """A refusal the user can act on: `kind` for Spindle, the message for the user."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


def main():
    request = json.load(open(sys.argv[1]))
    workdir = request["workdir"]
    try:
        result = run(request)
        result["ok"] = True
    except ImportRefused as e:
        result = {"ok": False, "kind": e.kind, "message": str(e)}
    with open(os.path.join(workdir, "result.json"), "w") as f:
        json.dump(result, f, indent=1)


def run(request):
    try:
        import numpy  # noqa: F401
        import tensorflow as tf  # noqa: F401
        import tf2onnx  # noqa: F401
    except ImportError as e:
        raise ImportRefused("missing_packages", f"{sys.executable} cannot import {e.name}")
    if request["source"] == "saved_model":
        model = SavedModel(request)
    else:
        model = Checkpoint(request)
    inputs, outputs = model.signature()
    for role, specs in (("input", inputs), ("output", outputs)):
        for spec in specs:
            check_spec(role, spec)
    onnx_path = os.path.join(request["workdir"], "model.onnx")
    convert(model, inputs, outputs, request["opset"], onnx_path)
    batch = request["batch"]
    feeds = random_batch(inputs, batch, request["seed"], request.get("id_ranges"))
    results = model.run(feeds)
    import tensorflow as tf
    import tf2onnx
    return {
        "tensorflow": tf.__version__,
        "tf2onnx": tf2onnx.__version__,
        "onnx": "model.onnx",
        "inputs": [describe(spec, feeds[i], request["workdir"], f"input{i}.bin")
                   for i, spec in enumerate(inputs)],
        "outputs": [describe(spec, results[i], request["workdir"], f"output{i}.bin")
                    for i, spec in enumerate(outputs)],
    }


def check_spec(role, spec):
    name, shape = spec["name"], spec["shape"]
    if spec["dtype"] not in DTYPES:
        raise ImportRefused(
            "unsupported_dtype",
            f"{role} '{name}' is {spec['dtype']}; Spindle serves "
            f"{', '.join(sorted(DTYPES))} tensors (export the signature with one of those)")
    if shape is None or len(shape) == 0 or shape[0] is not None:
        got = "a scalar" if shape == [] else ("of unknown rank" if shape is None
                                               else f"of shape {fmt_shape(shape)}")
        raise ImportRefused(
            "no_batch_dimension",
            f"{role} '{name}' is {got}: Spindle batches requests along a first dimension of "
            f"unknown size; export the signature with shape [None, ...] "
            f"(e.g. tf.TensorSpec([None, ...]) or a Keras Input(shape=...), which adds it)")
    if any(d is None for d in shape[1:]) and role == "input":
        raise ImportRefused(
            "unknown_dimension",
            f"input '{name}' has shape {fmt_shape(shape)}: only the first (batch) dimension may "
            f"be unknown; give the others fixed sizes in the exported signature")


def listing(names, most=8):
    """A directory's entries for a message: the first few, and how many more."""
    if not names:
        return "nothing"
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(names[:most]) + more


def fmt_shape(shape):
    return "[" + ", ".join("None" if d is None else str(d) for d in shape) + "]"


def spec_of(name, tensor_spec):
    shape = tensor_spec.shape
    dims = None if shape.rank is None else [d for d in shape.as_list()]
    return {"name": name, "dtype": tensor_spec.dtype.as_numpy_dtype.__name__
            if tensor_spec.dtype.is_numpy_compatible else tensor_spec.dtype.name,
            "shape": dims}


class SavedModel:
    """A TF2 or Keras SavedModel directory, through one of its signatures."""

    def __init__(self, request):
        import tensorflow as tf
        self.path = request["path"]
        self.signature_key = request["signature"]
        if not any(os.path.exists(os.path.join(self.path, f))
                   for f in ("saved_model.pb", "saved_model.pbtxt")):
            present = sorted(os.listdir(self.path)) if os.path.isdir(self.path) else []
            hint = ""
            if "checkpoint" in present or any(f.endswith(".meta") for f in present):
                hint = "; it looks like a TF1 checkpoint: use --checkpoint with --inputs and --outputs"
            raise ImportRefused(
                "not_saved_model",
                f"{request['display']} is not a SavedModel: it has no saved_model.pb "
                f"(it holds: {listing(present)}){hint}")
        try:
            self.loaded = tf.saved_model.load(self.path)
        except Exception as e:  # TensorFlow raises many types for a corrupt model
            raise ImportRefused("not_saved_model",
                                f"TensorFlow cannot load the SavedModel {request['display']}: {e}")
        signatures = self.loaded.signatures
        if self.signature_key not in signatures:
            raise ImportRefused(
                "missing_signature",
                f"the SavedModel {request['display']} has no signature '{self.signature_key}'; "
                f"it has: {', '.join(sorted(signatures)) or 'none'} (choose one with --signature)")
        self.function = signatures[self.signature_key]

    def signature(self):
        _, kwargs = self.function.structured_input_signature
        self.input_names = sorted(kwargs)
        inputs = [spec_of(n, kwargs[n]) for n in self.input_names]
        outs = self.function.structured_outputs
        self.output_names = sorted(outs)
        outputs = [spec_of(n, outs[n]) for n in self.output_names]
        return inputs, outputs

    def frozen(self):
        from tf2onnx import tf_loader
        graph, input_tensors, output_tensors, renames = tf_loader.from_saved_model(
            self.path, None, None, signatures=[self.signature_key],
            return_tensors_to_rename=True)
        return graph, input_tensors, output_tensors, renames

    def run(self, feeds):
        import tensorflow as tf
        answer = self.function(**{n: tf.constant(feeds[i])
                                  for i, n in enumerate(self.input_names)})
        return [answer[n].numpy() for n in self.output_names]


class Checkpoint:
    """A TF1-style checkpoint (`model.ckpt-N.meta`, `.index`, `.data-*`) and named tensors of its
    graph, as `tf.compat.v1.train.Saver` writes it (cifar10_train.py, TensorFlowOnSpark)."""

    def __init__(self, request):
        import tensorflow as tf
        path = request["path"]
        if os.path.isdir(path):
            prefix = tf.train.latest_checkpoint(path)
            if prefix is None:
                present = sorted(os.listdir(path))
                hint = ("; it looks like a SavedModel: use --saved-model"
                        if "saved_model.pb" in present else "")
                raise ImportRefused(
                    "not_checkpoint",
                    f"{request['display']} is not a checkpoint directory: it has no 'checkpoint' "
                    f"file naming the latest model.ckpt-N (it holds: {listing(present)}){hint}")
        else:
            prefix = path
        if not os.path.exists(prefix + ".meta"):
            raise ImportRefused(
                "not_checkpoint",
                f"{request['display']} is not a checkpoint: {os.path.basename(prefix)}.meta "
                f"(the graph Saver writes beside the variables) is missing; give the directory "
                f"holding 'checkpoint' or a prefix like .../model.ckpt-1000")
        self.prefix = prefix
        self.graph = tf.Graph()
        with self.graph.as_default():
            try:
                saver = tf.compat.v1.train.import_meta_graph(prefix + ".meta", clear_devices=True)
            except Exception as e:
                raise ImportRefused("not_checkpoint",
                                    f"TensorFlow cannot read {prefix}.meta: {e}")
            self.session = tf.compat.v1.Session(graph=self.graph)
            try:
                saver.restore(self.session, prefix)
            except Exception as e:
                raise ImportRefused("not_checkpoint",
                                    f"TensorFlow cannot restore the variables of {prefix}: {e}")
        self.inputs = [self.tensor("--inputs", n) for n in request["inputs"]]
        self.outputs = [self.tensor("--outputs", n) for n in request["outputs"]]

    def tensor(self, flag, given):
        alias, _, tensor_name = given.rpartition("=")
        if ":" not in tensor_name:
            tensor_name += ":0"
        try:
            tensor = self.graph.get_tensor_by_name(tensor_name)
        except (KeyError, ValueError):
            placeholders = [op.name for op in self.graph.get_operations()
                            if op.type == "Placeholder"]
            raise ImportRefused(
                "missing_tensor",
                f"{flag}: the checkpoint's graph has no tensor '{tensor_name}' "
                f"(its placeholders: {', '.join(placeholders) or 'none'})")
        if not alias:
            alias = tensor_name[:-2] if tensor_name.endswith(":0") else tensor_name
        return tensor, alias.replace("/", "_").replace(":", "_")

    def signature(self):
        def spec(pair):
            tensor, name = pair
            return spec_of(name, tensor)
        return [spec(p) for p in self.inputs], [spec(p) for p in self.outputs]

    def frozen(self):
        import tensorflow as tf
        outputs = [t.op.name for t, _ in self.outputs]
        frozen = tf.compat.v1.graph_util.convert_variables_to_constants(
            self.session, self.graph.as_graph_def(), outputs)
        # Grappler prunes what the outputs do not need, including the training graph's function
        # library (initialisers, optimiser), which tf2onnx would otherwise try to convert.
        from tf2onnx import tf_loader
        with tf.Graph().as_default():
            graph = tf_loader.tf_optimize([t.name for t, _ in self.inputs],
                                          [t.name for t, _ in self.outputs], frozen)
        # tf2onnx renames the ONNX inputs and outputs from graph tensor names to these.
        renames = {t.name: name for t, name in self.inputs + self.outputs}
        return (graph, [t.name for t, _ in self.inputs], [t.name for t, _ in self.outputs],
                renames)

    def run(self, feeds):
        values = self.session.run([t for t, _ in self.outputs],
                                  {t: feeds[i] for i, (t, _) in enumerate(self.inputs)})
        return list(values)


class UnsupportedOps(logging.Handler):
    """Catches tf2onnx's "Unsupported ops: Counter(...)" report, which it only logs."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.ops = {}

    def emit(self, record):
        if str(record.msg).startswith("Unsupported ops") and record.args:
            # logging unwraps a lone Mapping argument (the Counter) into record.args itself.
            counts = record.args if isinstance(record.args, Mapping) else record.args[0]
            self.ops.update(dict(counts))


def convert(model, inputs, outputs, opset, onnx_path):
    from tf2onnx import convert as tf2onnx_convert
    import onnx
    # tf2onnx renames the graph's tensors to the signature's names (tensors_to_rename), so the
    # ONNX inputs and outputs are named as config.toml will name them.
    graph, input_tensors, output_tensors, renames = model.frozen()
    unsupported = UnsupportedOps()
    logging.getLogger("tf2onnx").addHandler(unsupported)
    try:
        proto, _ = tf2onnx_convert._convert_common(
            graph, name="spindle-import", opset=opset, continue_on_error=True,
            input_names=input_tensors, output_names=output_tensors,
            tensors_to_rename=renames)
    except Exception as e:
        raise ImportRefused("conversion_failed", f"tf2onnx could not convert the model: {e}")
    if unsupported.ops:
        ops = ", ".join(f"{op} (x{n})" for op, n in sorted(unsupported.ops.items()))
        raise ImportRefused(
            "unsupported_ops",
            f"tf2onnx {__import__('tf2onnx').__version__} cannot convert these TensorFlow ops to "
            f"ONNX opset {opset}: {ops}; try a newer --opset, or export the model without them "
            f"(training-only and string ops often are)")
    onnx.save(proto, onnx_path)


def random_batch(inputs, batch, seed, id_ranges=None):
    """One batch of each input: floats uniform in [-1, 1], integers in [0, 10), booleans. With
    id_ranges (--features: [{"start": a, "end": b}] per id position), the first input's column j
    is drawn from its feature's ids [a, b) when the input is [None, len(id_ranges)]; Spindle
    refuses any other shape after conversion."""
    import numpy as np
    rng = np.random.default_rng(seed)
    feeds = []
    for i, spec in enumerate(inputs):
        shape = [batch] + spec["shape"][1:]
        dtype = np.dtype(spec["dtype"])
        if i == 0 and id_ranges and dtype.kind == "i" and shape[1:] == [len(id_ranges)]:
            value = np.stack([rng.integers(r["start"], r["end"], batch) for r in id_ranges],
                             axis=1).astype(dtype)
        elif dtype.kind == "f":
            value = rng.uniform(-1.0, 1.0, shape).astype(dtype)
        elif dtype.kind == "b":
            value = rng.integers(0, 2, shape).astype(bool)
        else:
            value = rng.integers(0, 10, shape).astype(dtype)
        feeds.append(value)
    return feeds


def describe(spec, value, workdir, file_name):
    import numpy as np
    value = np.ascontiguousarray(value)
    if value.dtype.name not in DTYPES:
        raise ImportRefused("unsupported_dtype",
                            f"TensorFlow answered '{spec['name']}' as {value.dtype.name}, "
                            f"which Spindle does not serve")
    with open(os.path.join(workdir, file_name), "wb") as f:
        f.write(value.astype(value.dtype.newbyteorder("<")).tobytes())
    return {"name": spec["name"], "dtype": DTYPES[value.dtype.name],
            "dims": [-1] + [d if d is not None else -1 for d in spec["shape"][1:]],
            "shape": list(value.shape), "file": file_name}


if __name__ == "__main__":
    main()
