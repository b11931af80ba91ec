"""What the TensorFlow conformance modules share: the spindle binary, free ports, a server
started on a repository and stopped at the end, and the HDFS of the test run (when there is one).

Nothing here knows about a particular test; each test_*.py module imports it.
"""
import os
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def spindle_bin():
    """The binary under test: $SPINDLE_BIN (scripts/test.sh passes its own) or the ci build."""
    return os.environ.get("SPINDLE_BIN") or os.path.join(ROOT, "target", "ci", "spindle")


def spindle(*args, check=True, timeout=600, env=None):
    """Runs `spindle ARGS...` and returns the CompletedProcess (text stdout and stderr).

    With check=True a non-zero exit raises AssertionError carrying stderr, so a failing test says
    what spindle printed.
    """
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run([spindle_bin(), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=full_env)
    if check and proc.returncode != 0:
        raise AssertionError(f"spindle {' '.join(map(str, args))} exited {proc.returncode}:\n"
                             f"{proc.stderr}\n{proc.stdout}")
    return proc


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hdfs_url():
    """The HDFS of this test run, or None (the caller skips, and says so)."""
    return os.environ.get("SPINDLE_HADOOP3_HDFS_URL") or os.environ.get("SPINDLE_HDFS_URL")


def require_hdfs(test):
    url = hdfs_url()
    if not url:
        raise unittest.SkipTest("no HDFS: set SPINDLE_HADOOP3_HDFS_URL (scripts/hadoop.sh start)")
    return url


class Server:
    """`spindle serve --repo REPO` on free loopback ports, as a context manager.

    Attributes once started: http ("127.0.0.1:PORT"), grpc ("127.0.0.1:PORT"), log (path).
    The server's log tail is printed when it fails to become ready.
    """

    def __init__(self, repo, *extra_args, ready_timeout=120):
        self.repo = repo
        self.extra_args = [str(a) for a in extra_args]
        self.ready_timeout = ready_timeout
        self.proc = None

    def __enter__(self):
        self.http = f"127.0.0.1:{free_port()}"
        self.grpc = f"127.0.0.1:{free_port()}"
        fd, self.log = tempfile.mkstemp(prefix="spindle-server-", suffix=".log")
        os.close(fd)
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                [spindle_bin(), "serve", "--repo", str(self.repo), "--http-addr", self.http,
                 "--grpc-addr", self.grpc, *self.extra_args],
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"spindle serve exited {self.proc.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"http://{self.http}/v2/health/ready", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        self.__exit__(None, None, None)
        raise AssertionError(f"spindle serve not ready after {self.ready_timeout} s:\n{self.tail()}")

    def tail(self, lines=40):
        with open(self.log) as f:
            return "".join(f.readlines()[-lines:])

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if exc and exc[0] is not None:
            print(f"--- server log ({self.log}) ---\n{self.tail()}")
        return False


def hdfs_put(local, url, dest):
    """Copies the local file or directory `local` to the path `dest` on the HDFS at `url`
    (hdfs://host:port), parents created, with Hadoop's own FsShell (scripts/hdfs.sh fs, the
    Hadoop 2.7.3 client jars; a Hadoop 3 NameNode speaks to it too). Skips when there is no Java
    or no jars: the test needs the upload, not any particular tool."""
    import shutil
    jars = os.path.join(os.path.expanduser(os.environ.get("XDG_CACHE_HOME", "~/.cache")),
                        "spindle", "hadoop-2.7.3", "jars")
    if not shutil.which("java") or not os.path.isdir(os.environ.get("SPINDLE_HADOOP_HOME", jars)):
        raise unittest.SkipTest(f"cannot upload to HDFS: no java or no Hadoop jars in {jars} "
                                f"(scripts/hdfs.sh start fetches them)")
    state = tempfile.mkdtemp(prefix="spindle-hdfs-put-")
    os.makedirs(os.path.join(state, "conf"))
    with open(os.path.join(state, "conf", "core-site.xml"), "w") as f:
        f.write("<configuration><property><name>fs.defaultFS</name>"
                f"<value>{url}</value></property></configuration>\n")
    script = os.path.join(ROOT, "scripts", "hdfs.sh")
    for args in (["-mkdir", "-p", os.path.dirname(dest.rstrip("/"))], ["-put", local, dest]):
        proc = subprocess.run([script, "fs", *args], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "SPINDLE_HDFS_DIR": state})
        if proc.returncode != 0:
            raise AssertionError(f"hdfs fs {' '.join(args)} failed:\n{proc.stderr[-2000:]}")


def raw_contents(value):
    """A numpy array in KServe v2's binary layout: little-endian elements, or for an object array
    of bytes (BYTES) each element as a 4-byte little-endian length, then its bytes."""
    import struct
    import numpy as np
    if value.dtype == object:
        return b"".join(struct.pack("<I", len(v)) + v for v in value.flatten())
    return np.ascontiguousarray(value).astype(value.dtype.newbyteorder("<")).tobytes()


def http_v2_infer(http, model, inputs, binary=False):
    """KServe v2 over HTTP: `inputs` is [(name, numpy array)]; returns {output name: array}.
    binary=True sends and asks for the binary extension (raw little-endian after the JSON).
    An object array of bytes goes as BYTES (raw Criteo rows, encoded images)."""
    import json
    import numpy as np
    datatypes = {"float32": "FP32", "float64": "FP64", "int32": "INT32", "int64": "INT64",
                 "object": "BYTES"}
    body = {"inputs": []}
    raw = b""
    for name, value in inputs:
        entry = {"name": name, "shape": list(value.shape), "datatype": datatypes[value.dtype.name]}
        if binary:
            data = raw_contents(value)
            entry["parameters"] = {"binary_data_size": len(data)}
            raw += data
        else:
            entry["data"] = [v.decode() if isinstance(v, bytes) else v
                             for v in value.flatten().tolist()]
        body["inputs"].append(entry)
    if binary:
        body["parameters"] = {"binary_data_output": True}
    header = json.dumps(body).encode()
    request = urllib.request.Request(f"http://{http}/v2/models/{model}/infer", data=header + raw)
    request.add_header("Content-Type", "application/octet-stream" if binary else
                       "application/json")
    if binary:
        request.add_header("Inference-Header-Content-Length", str(len(header)))
    with urllib.request.urlopen(request, timeout=120) as response:
        payload = response.read()
        json_length = response.headers.get("Inference-Header-Content-Length")
    numpy_types = {v: k for k, v in datatypes.items()}
    if json_length is None:
        answer = json.loads(payload)
        return {o["name"]: np.array(o["data"], dtype=numpy_types[o["datatype"]]).reshape(o["shape"])
                for o in answer["outputs"]}
    answer = json.loads(payload[:int(json_length)])
    offset, results = int(json_length), {}
    for o in answer["outputs"]:
        size = o["parameters"]["binary_data_size"]
        results[o["name"]] = np.frombuffer(payload[offset:offset + size], dtype=np.dtype(
            numpy_types[o["datatype"]]).newbyteorder("<")).reshape(o["shape"])
        offset += size
    return results


def tf_rest_predict(http, model, inputs):
    """TF Serving REST :predict, columnar ("inputs" as {name: nested list}); returns
    {output name: array} (a lone output comes back unnamed, as TF Serving answers it)."""
    import json
    import numpy as np
    body = json.dumps({"inputs": {name: value.tolist() for name, value in inputs}}).encode()
    request = urllib.request.Request(f"http://{http}/v1/models/{model}:predict", data=body)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=120) as response:
        outputs = json.loads(response.read())["outputs"]
    if isinstance(outputs, dict):
        return {k: np.array(v) for k, v in outputs.items()}
    return {None: np.array(outputs)}


def _grpc_v2_messages():
    """ModelInferRequest and ModelInferResponse of KServe v2 (the fields these tests use, with
    the numbers of server/proto/proto/inference.proto), built from descriptors at run time: this
    venv has grpcio and protobuf but no protoc, and tritonclient lives in another venv."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="spindle_tf_conformance_v2.proto",
                                              package="inference", syntax="proto3")

    def message(name, fields, nested=()):
        m = descriptor_pb2.DescriptorProto(name=name)
        for number, field_name, kind, label, type_name in fields:
            f = m.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                f.type_name = type_name
        m.nested_type.extend(nested)
        return m

    opt, rep = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    contents = message("InferTensorContents", [(6, "fp32_contents", F.TYPE_FLOAT, rep, None)])
    tensor = [(1, "name", F.TYPE_STRING, opt, None), (2, "datatype", F.TYPE_STRING, opt, None),
              (3, "shape", F.TYPE_INT64, rep, None),
              (5, "contents", F.TYPE_MESSAGE, opt, ".inference.InferTensorContents")]
    file.message_type.extend([
        contents,
        message("ModelInferRequest", [
            (1, "model_name", F.TYPE_STRING, opt, None),
            (2, "model_version", F.TYPE_STRING, opt, None),
            (5, "inputs", F.TYPE_MESSAGE, rep, ".inference.ModelInferRequest.InferInputTensor"),
            (7, "raw_input_contents", F.TYPE_BYTES, rep, None)],
            [message("InferInputTensor", tensor)]),
        message("ModelInferResponse", [
            (1, "model_name", F.TYPE_STRING, opt, None),
            (5, "outputs", F.TYPE_MESSAGE, rep,
             ".inference.ModelInferResponse.InferOutputTensor"),
            (6, "raw_output_contents", F.TYPE_BYTES, rep, None)],
            [message("InferOutputTensor", tensor)]),
    ])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return tuple(message_factory.GetMessageClass(pool.FindMessageTypeByName(f"inference.{n}"))
                 for n in ("ModelInferRequest", "ModelInferResponse"))


def grpc_v2_infer(grpc_addr, model, inputs):
    """KServe v2 ModelInfer over gRPC with raw_input_contents; returns {output name: array}."""
    import grpc
    import numpy as np
    request_type, response_type = _grpc_v2_messages()
    request = request_type(model_name=model)
    for name, value in inputs:
        request.inputs.add(name=name, datatype={"float32": "FP32", "int64": "INT64",
                                                "object": "BYTES"}[value.dtype.name],
                           shape=list(value.shape))
        request.raw_input_contents.append(raw_contents(value))
    with grpc.insecure_channel(grpc_addr) as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                                   request_serializer=request_type.SerializeToString,
                                   response_deserializer=response_type.FromString)
        response = call(request, timeout=120)
    results = {}
    for i, output in enumerate(response.outputs):
        if output.datatype != "FP32":
            raise AssertionError(f"gRPC output {output.name} is {output.datatype}; "
                                 f"this helper reads FP32 only")
        if response.raw_output_contents:
            data = np.frombuffer(response.raw_output_contents[i], dtype="<f4")
        else:
            data = np.array(output.contents.fp32_contents, dtype=np.float32)
        results[output.name] = data.reshape(list(output.shape))
    return results
