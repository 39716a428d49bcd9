"""keras_apps.analysis: MACs, memory and latency against hand-computed values; the report
files; tools/gen_model_table.py."""

import csv
import importlib.util
import math
import os
import pathlib

import keras
import pytest

import keras_apps
import keras_apps.layers
from keras_apps import analysis
REPO = pathlib.Path(__file__).resolve().parents[1]

L = keras.layers


def _model(input_shape, *layers):
    x = inputs = keras.Input(input_shape)
    for layer in layers:
        x = layer(x)
    return keras.Model(inputs, x)


# --- MACs: single layers against the closed forms of the docstring -------------------------


@pytest.mark.parametrize(
    "input_shape, layer, expected",
    [
        # 9x9x3, 3x3 stride 2 "same" -> 5x5x4: 25 positions * 4 filters * 27 taps; bias free.
        ((9, 9, 3), L.Conv2D(4, 3, strides=2, padding="same", use_bias=True), 25 * 4 * 27),
        # "valid" with dilation 2: effective 5x5 window -> 5x5x4, still 27 taps per output.
        ((9, 9, 3), L.Conv2D(4, 3, dilation_rate=2), 25 * 4 * 27),
        # Grouped: 2 groups of 2 input channels -> 7x7x4 outputs of 9 * 2 taps each.
        ((9, 9, 4), L.Conv2D(4, 3, groups=2), 49 * 4 * 18),
        # Dense 10 -> 7, and on a (5, 10) sequence: every position.
        ((10,), L.Dense(7), 70),
        ((5, 10), L.Dense(7), 5 * 7 * 10),
        # Depthwise 3x3, multiplier 2, "same" on 8x8x3: 64 * 6 channels * 9 taps.
        ((8, 8, 3), L.DepthwiseConv2D(3, depth_multiplier=2, padding="same"), 64 * 6 * 9),
        # Separable: depthwise 64*3*9 plus pointwise 64*3*5.
        ((8, 8, 3), L.SeparableConv2D(5, 3, padding="same"), 64 * 3 * 9 + 64 * 3 * 5),
        # Transposed 3x3 stride 2 on 4x4x2 -> 3 filters: every input value through the kernel.
        ((4, 4, 2), L.Conv2DTranspose(3, 3, strides=2), 16 * 2 * 9 * 3),
        # 1D convolution "causal" on 12 steps x 4 channels -> 6 filters, kernel 3.
        ((12, 4), L.Conv1D(6, 3, padding="causal"), 12 * 6 * 3 * 4),
        # Zero-MAC layers.
        ((6, 6, 2), L.BatchNormalization(), 0),
        ((6, 6, 2), L.MaxPooling2D(2), 0),
        ((6, 6, 2), L.GlobalAveragePooling2D(), 0),
        ((6, 6, 2), L.Activation("swish"), 0),
    ],
)
def test_layer_macs_match_hand_computation(input_shape, layer, expected):
    model = _model(input_shape, layer)
    assert analysis.count_flops(model) == expected
    report = analysis.flop_report(model)
    assert report.flops == 2 * expected
    assert report.uncounted == ()


def test_suite_layer_macs():
    suite = keras_apps.layers
    # SE on 4x4x32, r = 16: FC 32 -> 2 -> 32 on the squeezed vector; re-scaling counts 0.
    se = _model((4, 4, 32), suite.SqueezeExcitation(reduction=16))
    assert analysis.count_flops(se) == 32 * 2 + 2 * 32
    # LRN has no weights: 0.
    assert analysis.count_flops(_model((4, 4, 8), suite.LocalResponseNormalization())) == 0
    # Deformable 3x3 "same", 4 -> 8 channels on 6x6, one offset group: the conv on the samples
    # (36 positions * 8 * 9 * 4), the offset conv (18 channels) and 4 MACs per bilinear sample.
    deform = _model((6, 6, 4), suite.DeformableConv2D(8, 3, padding="same"))
    assert analysis.count_flops(deform) == 36 * 8 * 9 * 4 + 36 * 18 * 9 * 4 + 4 * 36 * 9 * 4
    modulated = _model((6, 6, 4), suite.DeformableConv2D(8, 3, padding="same", modulated=True))
    assert analysis.count_flops(modulated) == 36 * 8 * 9 * 4 + 36 * 27 * 9 * 4 + 4 * 36 * 9 * 4


def test_two_layer_net_macs():
    # 6x6x1 -> conv 3x3 (4x4x2: 16*2*9 = 288) -> BN, ReLU, 2x2 pool (2x2x2) -> flatten 8
    # -> dense 3 (24); BN, ReLU, pooling and flatten count 0.
    model = _model(
        (6, 6, 1),
        L.Conv2D(2, 3, name="conv"),
        L.BatchNormalization(name="bn"),
        L.ReLU(name="relu"),
        L.MaxPooling2D(2, name="pool"),
        L.Flatten(name="flatten"),
        L.Dense(3, name="fc"),
    )
    report = analysis.flop_report(model)
    assert report.macs == 288 + 24
    assert dict((path, macs) for path, _, macs in report.per_layer) == {
        "conv": 288, "bn": 0, "relu": 0, "pool": 0, "flatten": 0, "fc": 24,
    }


def test_merge_and_keras_ops_nodes():
    # Add/Multiply merges count 0; a keras.ops.matmul node counts out elements * inner size.
    a = keras.Input((4, 5))
    b = keras.Input((5, 3))
    product = keras.ops.matmul(a, b)  # (4, 3): 12 outputs of 5 MACs
    merged = L.Add()([product, L.Multiply()([product, product])])
    model = keras.Model([a, b], merged)
    assert analysis.count_flops(model) == 12 * 5


def test_nested_models_are_walked_and_shared_layers_counted_per_call():
    inner = keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(4, 3, padding="same", name="c")], name="inner")
    x = keras.Input((8, 8, 3))
    y = L.Add()([inner(x), inner(x)])  # two calls of the same sub-model
    outer_func = keras.Model(x, L.Conv2D(2, 1, name="head")(y), name="outer")
    wrapper_in = keras.Input((8, 8, 3))
    wrapper = keras.Model(wrapper_in, outer_func(wrapper_in), name="wrapper")
    conv = 64 * 4 * 27
    report = analysis.flop_report(wrapper)
    assert report.macs == 2 * conv + 64 * 2 * 4
    paths = [path for path, _, _ in report.per_layer]
    assert paths.count("outer/inner/c") == 2 and "outer/head" in paths
    assert analysis.count_flops(inner) == conv  # a Sequential model on its own


def test_input_shape_override_and_undefined_shapes():
    model = _model((None, None, 3), L.Conv2D(4, 3, padding="same"))
    with pytest.raises(ValueError, match="input_shape"):
        analysis.count_flops(model)
    assert analysis.count_flops(model, input_shape=(9, 9, 3)) == 81 * 4 * 27
    assert analysis.count_flops(model, input_shape=(4, 6, 3)) == 24 * 4 * 27
    with pytest.raises(ValueError, match="3 entries"):
        analysis.count_flops(model, input_shape=(9, 9))


@keras.saving.register_keras_serializable(package="test_analysis")
class _Doubler(L.Layer):
    def call(self, x):
        return 2.0 * x


@keras.saving.register_keras_serializable(package="test_analysis")
class _Scaled(L.Layer):
    def call(self, x):
        return 3.0 * x

    def count_macs(self, input_shape, output_shape):
        return math.prod(output_shape[1:])


def test_unknown_layers_are_listed_and_hooks_are_used():
    model = _model((4, 4, 2), L.Conv2D(3, 1, name="c"), _Doubler(name="mystery"), _Scaled(name="scaled"))
    with pytest.warns(UserWarning, match="mystery"):
        macs = analysis.count_flops(model)
    assert macs == 16 * 3 * 2 + 16 * 3  # conv + _Scaled.count_macs; _Doubler counts 0
    assert analysis.flop_report(model).uncounted == ("mystery (_Doubler)",)


def test_subclassed_model_is_rejected_clearly():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = L.Dense(2)

        def call(self, x):
            return self.dense(x)

    net = Net()
    net(keras.ops.zeros((1, 3)))
    with pytest.raises(TypeError, match="subclassed"):
        analysis.count_flops(net)


def _resnet50_macs_by_hand(size=224):
    """Bottleneck ResNet-50, keras.applications layout (stride on the first 1x1 conv)."""
    side = size // 2  # 7x7/2 stem conv
    total = side * side * 64 * 7 * 7 * 3
    side //= 2  # 3x3/2 max pool
    in_ch = 64
    for stage, (blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512))):
        for block in range(blocks):
            if block == 0 and stage > 0:
                side //= 2
            hw = side * side
            total += hw * width * in_ch  # 1x1 reduce
            total += hw * width * 9 * width  # 3x3
            total += hw * 4 * width * width  # 1x1 expand
            if block == 0:
                total += hw * 4 * width * in_ch  # projection shortcut
            in_ch = 4 * width
    return total + 2048 * 1000  # classifier


def test_resnet50_macs_match_the_published_figure():
    # He et al. (2016) Table 1: "3.8 x 10^9 FLOPs" (multiply-adds) for the stride-on-1x1
    # layout used here (and by keras.applications); torchvision's stride-on-3x3 "v1.5"
    # reaches 4.09 G. Two FLOPs per MAC would give ~7.7 G.
    model = keras_apps.build("resnet50")
    macs = analysis.count_flops(model)
    assert macs == _resnet50_macs_by_hand() == 3_857_973_248
    assert 3.8e9 <= macs <= 3.9e9


# --- parameters and memory -----------------------------------------------------------------


def test_params_and_weight_memory_closed_form():
    model = _model(
        (5, 5, 3),
        L.Conv2D(4, 3),  # 3*3*3*4 + 4 = 112
        L.BatchNormalization(),  # 4 gamma + 4 beta + 4 mean + 4 variance = 16
        L.Flatten(),  # 3*3*4 = 36 features
        L.Dense(2, dtype="float16"),  # 36*2 + 2 = 74 parameters stored in float16
    )
    assert model.count_params() == 112 + 16 + 74
    assert analysis.weight_memory_bytes(model) == (112 + 16) * 4 + 74 * 2


def test_peak_activation_memory_of_a_chain():
    # 4x4x2 input (32 floats = 128 B) -> 1x1 conv 8 (512 B) -> ReLU (512 B) -> 1x1 conv 1 (64 B).
    # While ReLU runs, its input and output are live and the image is already freed: 1024 B.
    model = _model((4, 4, 2), L.Conv2D(8, 1, name="c1"), L.ReLU(name="relu"), L.Conv2D(1, 1, name="c2"))
    report = analysis.activation_memory(model, 1)
    assert [live for _, live in report.per_step] == [128 + 512, 512 + 512, 512 + 64]
    assert report.peak_bytes == 1024 and report.peak_at == "relu"
    assert analysis.peak_activation_memory(model, 3) == 3 * 1024


def test_peak_activation_memory_of_branch_and_merge():
    # x (128 B) feeds two 1x1 convs a, b (512 B each) merged by Add (512 B), then Flatten,
    # which aliases the sum. x lives until b; a and b until the Add; peak during the Add.
    x = keras.Input((4, 4, 2))
    a = L.Conv2D(8, 1, name="a")(x)
    b = L.Conv2D(8, 1, name="b")(x)
    s = L.Add(name="add")([a, b])
    model = keras.Model(x, L.Flatten(name="flat")(s))
    report = analysis.activation_memory(model, 2)
    steps = dict(report.per_step)
    assert steps["add"] == 2 * (512 * 3)
    assert steps["flat"] == 2 * 512  # alias: no second buffer
    assert sorted([steps["a"], steps["b"]]) == [2 * (128 + 512), 2 * (128 + 512 + 512)]
    assert report.peak_bytes == 2 * 1536 and report.peak_at == "add"
    with pytest.raises(ValueError, match="batch_size"):
        analysis.peak_activation_memory(model, 0)


# --- latency -------------------------------------------------------------------------------


def test_measure_latency_returns_positive_numbers():
    model = _model((8, 8, 3), L.Conv2D(4, 3), L.GlobalAveragePooling2D(), L.Dense(2))
    results = analysis.measure_latency(model, (1, 4), warmup=1, repeats=1)
    assert sorted(results) == [1, 4]
    for batch_size, result in results.items():
        assert result["latency_s"] > 0 and result["throughput"] > 0
        assert result["throughput"] == pytest.approx(batch_size / result["latency_s"])
        assert len(result["times_s"]) == 1
    with pytest.raises(ValueError, match="batch_sizes"):
        analysis.measure_latency(model, (0,))
    with pytest.raises(ValueError, match="repeats"):
        analysis.measure_latency(model, (1,), repeats=0)


# --- report --------------------------------------------------------------------------------


def _read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_analyze_without_measuring_writes_report(tmp_path):
    result = analysis.analyze(
        "resnet20_cifar", batch_sizes=(1, 4), output_dir=tmp_path, measure=False,
        accuracies={"resnet20_cifar": 91.25},  # He et al. 2016, Table 6: 8.75% error
    )
    paths = result["paths"]
    assert set(paths) == {"markdown", "csv", "operations_chart", "memory_chart"}
    for path in paths.values():
        assert os.path.getsize(path) > 0
    (row,) = _read_csv(paths["csv"])
    assert list(row)[:12] == [
        "name", "family", "input_shape", "classes", "params", "trainable_params",
        "weight_bytes", "macs", "flops", "top1", "top1_source", "uncounted",
    ]
    assert "latency_s_bs1" not in row
    spec = keras_apps.get_spec("resnet20_cifar")
    assert row["name"] == "resnet20_cifar" and row["input_shape"] == "32x32x3"
    assert int(row["params"]) == spec.params
    assert int(row["macs"]) == result["rows"][0]["macs"] > 40e6
    assert float(row["top1"]) == 91.25
    assert int(row["memory_bytes_bs4"]) == int(row["weight_bytes"]) + int(row["activation_bytes_bs4"])
    markdown = open(paths["markdown"]).read()
    assert "resnet20_cifar" in markdown and "operations_vs_parameters.png" in markdown


def test_analyze_with_measurement_writes_latency_chart(tmp_path):
    result = analysis.analyze("resnet20_cifar", batch_sizes=(1, 2), output_dir=tmp_path, repeats=1)
    paths = result["paths"]
    assert os.path.getsize(paths["latency_chart"]) > 0
    (row,) = _read_csv(paths["csv"])
    assert float(row["latency_s_bs2"]) > 0 and float(row["images_per_s_bs1"]) > 0


def test_analyze_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="no_such_model"):
        analysis.analyze("no_such_model*", output_dir=tmp_path, measure=False)
    with pytest.raises(ValueError, match="batch_sizes"):
        analysis.analyze("resnet20_cifar", batch_sizes=(1, -2), output_dir=tmp_path, measure=False)
    with pytest.raises(ValueError, match="input_size"):
        analysis.analyze_model("resnet20_cifar", input_size=2, measure=False)


# --- tools/gen_model_table.py --------------------------------------------------------------


def _load_gen_model_table():
    spec = importlib.util.spec_from_file_location("gen_model_table", REPO / "tools" / "gen_model_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gen_model_table_check_and_update(tmp_path, capsys):
    tool = _load_gen_model_table()
    readme = tmp_path / "README.md"
    argv = ["--readme", str(readme), "--pattern", "resnet20_cifar"]
    assert tool.main(argv) == 2 and "does not exist" in capsys.readouterr().err

    readme.write_text("# Title\n\nno markers here\n")
    assert tool.main(argv + ["--check"]) == 2 and "marker" in capsys.readouterr().err

    readme.write_text(f"# Title\n\n{tool.START}\nold table\n{tool.END}\n\nAfter.\n")
    assert tool.main(argv + ["--check"]) == 1
    assert tool.main(argv) == 0
    text = readme.read_text()
    assert text.startswith("# Title\n\n") and text.endswith(f"{tool.END}\n\nAfter.\n")
    assert "| `resnet20_cifar` | resnet | 32x32x3 | 10 | 271,098 | 40.55 M" in text
    assert tool.main(argv + ["--check"]) == 0
