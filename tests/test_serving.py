"""keras_apps.serving: every kind of exportable model in TF Serving's layout, each signature
run by TensorFlow's own ``saved_model_cli run`` (the TF1 Session loader, as TF Serving
loads a SavedModel) and compared with the Keras model; real ``PredictRequest`` protos and
REST JSON bodies that decode to the same numbers; the client's errors.

Models (small inputs): a plain registry model (ResNet-20, 16x16), a registry model with a
dict of outputs (GoogLeNet's training model with its auxiliary classifiers, 65x65), HD-CNN
with conditional execution (its serving hint: inputs ``image`` and scalar ``beta``) and a
NIWT-extended classifier (ResNet-20 + 3 new classes by ``extend_classifier``). All
``saved_model_cli`` runs of the module share one TensorFlow start-up
(:func:`keras_apps.serving.run_saved_model_cli` with ``batch=True``); one test runs the
installed console script itself.
"""

import json
import math
import socket
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

import keras_apps
from keras_apps import export, registry, serving
from keras_apps.hdcnn.conditional import conditional_predict
from keras_apps.niwt.transfer import extend_classifier

pytestmark = pytest.mark.xdist_group("serving")

SIZE = 16
HDCNN_BETA = 1.0  # threshold 1/(beta*K) = 1/3: only the components near the top coarse run


def _images(n, size=SIZE, seed=0):
    return np.random.default_rng(seed).uniform(0.0, 1.0, (n, size, size, 3)).astype(np.float32)


def _build_models():
    keras.utils.set_random_seed(7)
    plain = keras_apps.build("resnet20_cifar", input_shape=(SIZE, SIZE, 3), classes=10)
    googlenet = keras_apps.build("googlenet", input_shape=(65, 65, 3), classes=10, aux_logits=True)
    hdcnn = keras_apps.build("hdcnn", input_shape=(SIZE, SIZE, 3), classes=10,
                             building_block_kwargs={"width": 0.25})
    backbone = keras_apps.build("resnet20_cifar", input_shape=(SIZE, SIZE, 3), classes=5)
    rng = np.random.default_rng(3)
    width = backbone.get_layer("predictions").kernel.shape[0]
    new_weights = rng.normal(0.0, 0.3, (width, 3)).astype(np.float32)
    new_biases = rng.normal(0.0, 0.1, 3).astype(np.float32)
    niwt = extend_classifier(backbone, new_weights, new_biases)
    return {"plain": plain, "dict": googlenet, "hdcnn": hdcnn, "niwt": niwt}, {
        "backbone": backbone, "new_weights": new_weights, "new_biases": new_biases,
    }


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The four models exported with format "serving" under one root, the images fed to
    them, the Keras outputs, and the outputs of every signature run by saved_model_cli."""
    root = tmp_path_factory.mktemp("saved_models")
    models, niwt_parts = _build_models()
    images = {"plain": _images(4), "dict": _images(3, size=65, seed=1), "hdcnn": _images(6, seed=2),
              "niwt": _images(4, seed=3)}
    paths = {}
    for kind, model in models.items():
        output = root / "resnet20_cifar_niwt" if kind == "niwt" else None
        paths[kind] = export.export_model(model, "serving", root=root, output=output,
                                          sample=images[kind]).path
    runs = {
        ("plain", "serving_default"): serving.CliRun(paths["plain"], images["plain"]),
        ("plain", "serve"): serving.CliRun(paths["plain"], images["plain"], "serve"),
        ("dict", "serving_default"): serving.CliRun(paths["dict"], images["dict"]),
        ("dict", "serve"): serving.CliRun(paths["dict"], images["dict"], "serve"),
        ("niwt", "serving_default"): serving.CliRun(paths["niwt"], images["niwt"]),
        ("niwt", "serve"): serving.CliRun(paths["niwt"], images["niwt"], "serve"),
    }
    outputs = serving.run_saved_model_cli(list(runs.values()), workdir=tmp_path_factory.mktemp("cli"))
    keras_outputs = {kind: model.predict(images[kind], verbose=0) for kind, model in models.items()}
    return {
        "root": root, "models": models, "paths": paths, "images": images, "niwt": niwt_parts,
        "cli": dict(zip(runs, outputs)), "keras": keras_outputs,
        "workdir": tmp_path_factory.mktemp("cli_hdcnn"),
    }


@pytest.fixture(scope="module")
def hdcnn_cli(served):
    """HD-CNN's conditional signature run by saved_model_cli at beta = inf (the recorded
    default, passed explicitly: saved_model_cli has no defaults) and at HDCNN_BETA; a batch
    of its own, so that a failure here does not hide the other models' results."""
    path, images = served["paths"]["hdcnn"], served["images"]["hdcnn"]
    runs = [serving.CliRun(path, images, beta=math.inf), serving.CliRun(path, images, beta=HDCNN_BETA)]
    full, routed = serving.run_saved_model_cli(runs, workdir=served["workdir"])
    return {"inf": full, "beta": routed}


def _hdcnn_outputs(served) -> dict:
    """HD-CNN's three serving outputs at beta = inf (the Keras model; all K components)."""
    keras_outputs = served["keras"]["hdcnn"]
    runs = np.full(len(keras_outputs["coarse"]), keras_outputs["coarse"].shape[1], np.int32)
    return {"predictions": keras_outputs["predictions"], "coarse": keras_outputs["coarse"],
            "components_run": runs}


def _close(got, want, atol=1e-5):
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(want, np.float64), rtol=0, atol=atol)


@pytest.mark.slow
def test_layout_is_tf_serving_model_folder_of_versions(served):
    root = served["root"]
    for kind, name in [("plain", "resnet20_cifar"), ("dict", "googlenet"), ("hdcnn", "hdcnn"),
                       ("niwt", "resnet20_cifar_niwt")]:
        path = served["paths"][kind]
        assert path == root / name / "1"
        assert (path / "saved_model.pb").is_file() and (path / "variables").is_dir()
        assert serving.saved_model_dir(root / name) == path


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["plain", "niwt"])
def test_single_output_signatures_through_saved_model_cli(served, kind):
    want = served["keras"][kind]
    for key in ("serving_default", "serve"):
        got = served["cli"][(kind, key)]
        assert sorted(got) == ["output_0"]
        assert got["output_0"].shape == want.shape
        _close(got["output_0"], want)


@pytest.mark.slow
def test_niwt_extended_model_scores_old_and_new_classes(served):
    """The served NIWT model's probabilities are the softmax of [old logits | new logits],
    recomputed from the backbone's penultimate features and the old and new weights."""
    parts, images = served["niwt"], served["images"]["niwt"]
    backbone = parts["backbone"]
    dense = backbone.get_layer("predictions")
    features = keras.Model(backbone.inputs, dense.input).predict(images, verbose=0).astype(np.float64)
    old_kernel, old_bias = (w.astype(np.float64) for w in dense.get_weights())
    logits = np.concatenate([features @ old_kernel + old_bias,
                             features @ parts["new_weights"] + parts["new_biases"]], axis=1)
    reference = np.exp(logits - logits.max(axis=1, keepdims=True))
    reference /= reference.sum(axis=1, keepdims=True)
    got = served["cli"][("niwt", "serving_default")]["output_0"]
    assert got.shape == (len(images), 8)
    _close(got, reference, atol=1e-5)


@pytest.mark.slow
def test_dict_output_signatures_through_saved_model_cli(served):
    want = served["keras"]["dict"]
    assert sorted(want) == ["aux1", "aux2", "main"]
    for key in ("serving_default", "serve"):
        got = served["cli"][("dict", key)]
        assert sorted(got) == ["aux1", "aux2", "main"]
        for name in want:
            _close(got[name], want[name])


@pytest.mark.slow
def test_hdcnn_conditional_signature_through_saved_model_cli(served, hdcnn_cli):
    """beta = inf gives the Keras model and runs all K components; a finite beta gives the
    same routing as conditional_predict (fewer components, the routed probabilities)."""
    model, images = served["models"]["hdcnn"], served["images"]["hdcnn"]
    want = served["keras"]["hdcnn"]
    full = hdcnn_cli["inf"]
    assert sorted(full) == ["coarse", "components_run", "predictions"]
    for key in ("coarse", "predictions"):
        _close(full[key], want[key])
    num_coarse = want["coarse"].shape[1]
    np.testing.assert_array_equal(full["components_run"], np.full(len(images), num_coarse))
    assert full["components_run"].dtype == np.int32

    routed = hdcnn_cli["beta"]
    reference = conditional_predict(model, images, beta=HDCNN_BETA)
    np.testing.assert_array_equal(routed["components_run"], reference.components_run)
    _close(routed["predictions"], reference.probabilities)
    _close(routed["coarse"], reference.coarse)
    # the reference rule, from the coarse probabilities: B_ik >= 1/(beta K), or k is the top-1
    coarse = want["coarse"]
    runs = (coarse >= 1.0 / (HDCNN_BETA * num_coarse)) | (coarse == coarse.max(axis=1, keepdims=True))
    np.testing.assert_array_equal(routed["components_run"], runs.sum(axis=1))


@pytest.mark.slow
def test_signatures_match_the_tf2_loader_and_are_documented(served):
    """signatures() (read from saved_model.pb) agrees with tf.saved_model.load's concrete
    functions; describe() documents serving_default of a plain model and of HD-CNN."""
    for kind in ("plain", "dict", "hdcnn", "niwt"):
        path = served["paths"][kind]
        infos = serving.signatures(path)
        loaded = tf.saved_model.load(str(path))
        assert sorted(infos) == sorted(loaded.signatures)
        for key, info in infos.items():
            assert info.method_name == "tensorflow/serving/predict"
            function = loaded.signatures[key]
            specs = function.structured_input_signature[1]
            assert sorted(info.inputs) == sorted(specs)
            for name, spec in specs.items():
                assert info.inputs[name].dtype == spec.dtype.name
                assert info.inputs[name].shape == tuple(spec.shape.as_list())
            outputs = function.structured_outputs
            assert sorted(info.outputs) == sorted(outputs)
            for name, spec in outputs.items():
                assert info.outputs[name].dtype == spec.dtype.name
                assert info.outputs[name].shape == tuple(spec.shape.as_list())
    plain = serving.describe(served["root"] / "resnet20_cifar")
    assert "signature 'serving_default' (method tensorflow/serving/predict)" in plain
    assert "input  'image': float32 (None, 16, 16, 3)" in plain
    assert "output 'output_0': float32 (None, 10)" in plain
    hdcnn = serving.describe(served["paths"]["hdcnn"])
    assert "input  'beta': float32 scalar, default inf" in hdcnn
    assert "output 'components_run': int32 (None)" in hdcnn
    assert "output 'coarse': float32 (None, 3)" in hdcnn
    assert serving.serving_defaults(served["paths"]["hdcnn"]) == {"beta": math.inf}
    assert serving.serving_defaults(served["paths"]["plain"]) == {}


@pytest.mark.slow
def test_predict_request_round_trips(served):
    images = served["images"]["hdcnn"]
    path = served["root"] / "hdcnn"
    request = serving.predict_request(images, model_name="hdcnn", version=1, path=path)
    assert isinstance(request, predict_pb2.PredictRequest)
    again = predict_pb2.PredictRequest.FromString(request.SerializeToString())
    assert again.model_spec.name == "hdcnn"
    assert again.model_spec.signature_name == "serving_default"
    assert again.model_spec.version.value == 1
    assert sorted(again.inputs) == ["beta", "image"]
    np.testing.assert_array_equal(tf.make_ndarray(again.inputs["image"]), images)
    assert tf.make_ndarray(again.inputs["beta"]).shape == ()
    assert tf.make_ndarray(again.inputs["beta"]) == np.float32(np.inf)  # the recorded default
    routed = serving.predict_request(images, model_name="hdcnn", path=path, beta=HDCNN_BETA)
    assert tf.make_ndarray(routed.inputs["beta"]) == np.float32(HDCNN_BETA)
    assert not routed.model_spec.HasField("version")

    plain = served["images"]["plain"].astype(np.float64)  # cast to the signature's float32
    request = serving.predict_request(plain, model_name="resnet20_cifar", signature_name="serve",
                                      path=served["paths"]["plain"])
    assert request.model_spec.signature_name == "serve"
    assert request.inputs["image"].dtype == tf.float32.as_datatype_enum
    np.testing.assert_array_equal(tf.make_ndarray(request.inputs["image"]), plain.astype(np.float32))
    no_path = serving.predict_request(served["images"]["plain"], model_name="m")
    assert sorted(no_path.inputs) == ["image"]


@pytest.mark.slow
def test_predict_response_parses_back_to_the_outputs(served):
    outputs = _hdcnn_outputs(served)
    response = predict_pb2.PredictResponse()
    for key, value in outputs.items():
        response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
    for parsed in (serving.parse_predict_response(response),
                   serving.parse_predict_response(response.SerializeToString())):
        assert sorted(parsed) == sorted(outputs)
        for key in outputs:
            np.testing.assert_array_equal(parsed[key], outputs[key])
            assert parsed[key].dtype == outputs[key].dtype


@pytest.mark.slow
def test_rest_bodies_decode_to_the_same_numbers(served):
    images = served["images"]["plain"]
    body = json.loads(serving.rest_body(images, path=served["paths"]["plain"]))
    assert body["signature_name"] == "serving_default"
    decoded = np.asarray(body["instances"], dtype=np.float32)
    np.testing.assert_array_equal(decoded, images)
    columnar = json.loads(serving.rest_body(images, format="inputs", signature_name="serve"))
    assert sorted(columnar) == ["inputs", "signature_name"]
    np.testing.assert_array_equal(np.asarray(columnar["inputs"]["image"], np.float32), images)

    hdcnn = served["images"]["hdcnn"]
    text = serving.rest_body(hdcnn, format="inputs", path=served["paths"]["hdcnn"])
    assert '"beta": Infinity' in text  # TF Serving's JSON accepts Infinity / NaN tokens
    body = json.loads(text)
    assert body["inputs"]["beta"] == math.inf
    np.testing.assert_array_equal(np.asarray(body["inputs"]["image"], np.float32), hdcnn)
    body = json.loads(serving.rest_body(hdcnn, format="inputs", beta=2.5))
    assert body["inputs"]["beta"] == 2.5
    with pytest.raises(ValueError, match=r"row format \('instances'\) cannot carry the scalar input"):
        serving.rest_body(hdcnn, path=served["paths"]["hdcnn"])


@pytest.mark.slow
def test_rest_responses_parse_back_to_the_outputs(served):
    outputs = _hdcnn_outputs(served)
    keys = sorted(outputs)
    rows = [{k: outputs[k][i].tolist() for k in keys} for i in range(len(outputs["predictions"]))]
    path = served["paths"]["hdcnn"]
    for body in (json.dumps({"predictions": rows}), {"outputs": {k: v.tolist() for k, v in outputs.items()}}):
        parsed = serving.parse_rest_response(body, path=path)
        assert sorted(parsed) == keys
        for key in keys:
            np.testing.assert_array_equal(parsed[key], outputs[key])
            assert parsed[key].dtype == outputs[key].dtype
    single = served["cli"][("plain", "serving_default")]["output_0"]
    for body in ({"predictions": single.tolist()}, {"outputs": single.tolist()}):
        parsed = serving.parse_rest_response(json.dumps(body).encode(), path=served["paths"]["plain"])
        assert sorted(parsed) == ["output_0"] and parsed["output_0"].dtype == np.float32
        np.testing.assert_array_equal(parsed["output_0"], single)
    assert sorted(serving.parse_rest_response({"outputs": [1.0]}, output_key="probs")) == ["probs"]
    with pytest.raises(serving.ServingError, match="Servable not found"):
        serving.parse_rest_response('{"error": "Servable not found for request: Latest(x)"}')


@pytest.mark.slow
def test_client_errors_name_the_bad_value(served):
    plain, hdcnn = served["paths"]["plain"], served["paths"]["hdcnn"]
    images = served["images"]["plain"]
    cases = [
        (lambda: serving.predict_request(images[0], model_name="m", path=plain),
         r"takes rank 4 \(None, 16, 16, 3\); the images have shape \(16, 16, 3\)"),
        (lambda: serving.predict_request(images[:, :8], model_name="m", path=plain),
         r"takes \(None, 16, 16, 3\); the images have shape \(4, 8, 16, 3\)"),
        (lambda: serving.predict_request((images * 255).astype(np.uint8), model_name="m", path=plain),
         "takes float32; the images have dtype uint8"),
        (lambda: serving.predict_request(images, model_name="m", path=plain, signature_name="predict"),
         "has no signature 'predict'; its signatures: serve, serving_default"),
        (lambda: serving.predict_request(images, model_name="m", path=plain, beta=1.0),
         r"has no scalar input\(s\) \['beta'\]; its scalar inputs: none"),
        (lambda: serving.predict_request(served["images"]["hdcnn"], model_name="m", path=hdcnn, beta="4"),
         "Scalar input 'beta' must be a real number, got '4'"),
        (lambda: serving.predict_request(images, model_name="m", path=served["root"], version=1),
         "neither a SavedModel folder"),
        (lambda: serving.predict_request(images, model_name="m", path=served["root"] / "hdcnn", version=2),
         r"has no version 2; it has versions \[1\]"),
        (lambda: serving.predict_request(images, model_name=""), "`model_name` must be"),
        (lambda: serving.predict_request(images, model_name="m", version=0), "`version` must be None"),
        (lambda: serving.rest_body(images, format="rows"),
         "Unknown REST body format 'rows'; allowed: instances, inputs"),
        (lambda: serving.rest_url("localhost", 70000, "m"), "`port` must be an integer in 1..65535, got 70000"),
        (lambda: serving.run_saved_model_cli([serving.CliRun(hdcnn, served["images"]["hdcnn"])]),
         r"takes the inputs \['beta', 'image'\]; the run feeds \['image'\]"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()


def test_rest_urls():
    assert serving.rest_url("localhost", 8501, "resnet20_cifar") == \
        "http://localhost:8501/v1/models/resnet20_cifar:predict"
    assert serving.rest_url("10.0.0.2", 9000, "hdcnn", version=3) == \
        "http://10.0.0.2:9000/v1/models/hdcnn/versions/3:predict"
    assert serving.rest_url("::1", 8501, "m", scheme="https") == "https://[::1]:8501/v1/models/m:predict"
    for bad in ("", "http://localhost", "a b"):
        with pytest.raises(ValueError, match="`host` must be a host name"):
            serving.rest_url(bad, 8501, "m")
    with pytest.raises(ValueError, match="`model_name` must be"):
        serving.rest_url("localhost", 8501, "a/b")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_grpc_and_rest_clients_fail_clearly_when_nothing_listens():
    """predict_grpc builds the PredictionService stub and request and sends it; with no
    server it raises ServingConnectionError within its timeout (no server binary here)."""
    images = _images(2)
    port = _free_port()
    started = time.perf_counter()
    with pytest.raises(serving.ServingConnectionError,
                       match=rf"No TF Serving gRPC server answered at 127\.0\.0\.1:{port} within 1 s"):
        serving.predict_grpc(images, model_name="resnet20_cifar", host="127.0.0.1", port=port, timeout=1.0)
    with pytest.raises(serving.ServingConnectionError,
                       match=rf"No TF Serving REST server answered at http://127\.0\.0\.1:{port}/v1/models/m:predict"):
        serving.predict_rest(images, model_name="m", host="127.0.0.1", port=port, timeout=1.0)
    assert time.perf_counter() - started < 10
    with pytest.raises(ValueError, match="`timeout` must be a positive number"):
        serving.predict_grpc(images, model_name="m", port=port, timeout=0)


@pytest.mark.slow
def test_installed_saved_model_cli_script(served):
    """One run through the installed ``saved_model_cli`` console script itself (its own
    process): the dict-output GoogLeNet's ``serve`` signature."""
    images = served["images"]["dict"][:2]
    got = serving.run_saved_model_cli([serving.CliRun(served["paths"]["dict"], images, "serve")],
                                      batch=False)[0]
    want = served["models"]["dict"].predict(images, verbose=0)
    assert sorted(got) == sorted(want)
    for key in want:
        _close(got[key], want[key])


def test_cli_arguments():
    run = serving.CliRun("/m/hdcnn/1", np.zeros((1, 4, 4, 3), np.float32), beta=math.inf)
    assert serving.cli_arguments(run, "/t/x.npy", "/t/out") == [
        "run", "--dir", "/m/hdcnn/1", "--tag_set", "serve", "--signature_def", "serving_default",
        "--inputs", "image=/t/x.npy", "--outdir", "/t/out", "--overwrite", "--input_exprs", "beta=1e999",
    ]
    assert float("1e999") == math.inf


def test_every_registry_model_has_a_serving_target(tmp_path):
    """Without building the large networks: every registered name is usable as a TF Serving
    model folder (version 1, then 2 beside an existing 1), takes one image input, and only
    the HD-CNN presets declare a serving hint (their conditional-execution signature);
    every other model is served by model.export's serving_default."""
    names = keras_apps.list_models()
    assert len(names) > 40
    for name in names:
        assert export.check_target(name, "serving", root=tmp_path) == tmp_path / name / "1"
        info = keras_apps.model_info(name)
        assert len(info["input_shape"]) == 3
        hinted = registry.serving_hint(name) is not None
        assert hinted == (info["family"] == "hdcnn"), name
    (tmp_path / "resnet50" / "1").mkdir(parents=True)
    assert export.check_target("resnet50", "serving", root=tmp_path) == tmp_path / "resnet50" / "2"
