"""Packaging: the console script's launcher imports no TensorFlow for --help/list/info (plug-ins
included), the static model index matches the registry, and ``import keras_apps`` registers
every serialisable object of the package, so ``.keras`` files load in a fresh process."""

import ast
import json
import os
import pathlib
import subprocess
import sys
import textwrap
import tomllib

import keras
import numpy as np

import keras_apps_cli
from keras_apps import _cli_index
from keras_apps.layers import (
    DeformableConv2D,
    LocalResponseNormalization,
    SqueezeExcitation,
    ZeroPaddingShortcut,
)

REPO = pathlib.Path(__file__).resolve().parents[1]
HEAVY = ("tensorflow", "keras", "keras_apps", "greeting_plugin")


def _python(code: str, *, path=(), timeout=300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = os.pathsep.join([*map(str, path), str(REPO)])
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def test_the_console_script_is_the_light_launcher():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert config["project"]["scripts"]["keras-apps"] == "keras_apps_cli:main"
    assert "keras_apps_cli" in config["tool"]["setuptools"]["py-modules"]
    assert keras_apps_cli.MODEL_INDEX in config["tool"]["setuptools"]["package-data"]["keras_apps"]
    assert (REPO / "keras_apps" / keras_apps_cli.MODEL_INDEX).is_file()


def test_help_list_and_info_import_no_tensorflow_and_plugins_load_only_when_run(tmp_path):
    """A third-party plug-in, installed as a distribution with an entry point (a dist-info
    folder on the path), shows in --help without being imported, then runs."""
    (tmp_path / "greeting_plugin.py").write_text(
        '"""Greets someone (a third-party plug-in)."""\n\n'

        "def register(parser):\n"
        "    parser.add_argument('--who', default='world')\n"
        "    parser.set_defaults(func=lambda args: print(f'hello {args.who}'))\n"
    )
    dist = tmp_path / "greeting_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: greeting-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        f"[{keras_apps_cli.ENTRY_POINT_GROUP}]\nhello = greeting_plugin:register\n"
    )
    out = _python(f"""
        import contextlib, io, json, sys
        import keras_apps_cli
        printed = {{}}
        for argv in (["--help"], ["list", "vgg*"], ["info", "resnet50"], ["train", "--help"]):
            buffer = io.StringIO()
            with contextlib.redirect_stdout(buffer):
                assert keras_apps_cli.main(argv) == 0, argv
            printed[" ".join(argv)] = buffer.getvalue()
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            assert keras_apps_cli.main(["hello", "--who", "Ada"]) == 0
        printed["hello"] = buffer.getvalue()
        print(json.dumps({{"heavy": heavy, "printed": printed}}))
    """, path=[tmp_path])
    result = json.loads(out.stdout.splitlines()[-1])
    assert result["heavy"] == []
    printed = result["printed"]
    assert "Greets someone (a third-party plug-in)." in printed["--help"]
    assert printed["list vgg*"].split()[0] == "vgg16"
    assert json.loads(printed["info resnet50"])["params"] == 25_636_712
    assert "--validation-fraction" in printed["train --help"]
    assert printed["hello"] == "hello Ada\n"
    assert not [line for line in out.stderr.splitlines() if line[:1] in "IWE" and line[1:5].isdigit()]


def test_the_model_index_matches_the_registry():
    on_disk = json.loads(_cli_index.INDEX.read_text())
    assert on_disk == _cli_index.build_index(), (
        "keras_apps/_model_index.json is stale: run `python -m keras_apps._cli_index`"
    )


def _registered_in_sources() -> set:
    """``package>name`` of every ``register_keras_serializable`` decorator in keras_apps/."""
    found = set()
    for path in (REPO / "keras_apps").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, (ast.ClassDef, ast.FunctionDef)):
                continue
            for decorator in node.decorator_list:
                if not isinstance(decorator, ast.Call):
                    continue
                func = decorator.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name != "register_keras_serializable":
                    continue
                root = func
                while isinstance(root, ast.Attribute):
                    root = root.value
                if getattr(root, "id", "") == "tf_keras":
                    continue  # tf_keras objects of the tfmot bridge, registered when it loads
                kwargs = {k.arg: k.value.value for k in decorator.keywords
                          if isinstance(k.value, ast.Constant)}
                args = [a.value for a in decorator.args if isinstance(a, ast.Constant)]
                package = kwargs.get("package", args[0] if args else "Custom")
                found.add(f"{package}>{kwargs.get('name', args[1] if len(args) > 1 else node.name)}")
    return found


def test_import_keras_apps_registers_everything_and_keras_files_load_in_a_fresh_process(tmp_path):
    expected = _registered_in_sources()
    assert {"keras_apps>DeformableConv2D", "keras_apps>ZeroPaddingShortcut"} <= expected

    inputs = keras.Input((8, 8, 4), name="image")
    x = DeformableConv2D(4, 3, padding="same")(inputs)
    x = LocalResponseNormalization(size=3)(x)
    x = SqueezeExcitation(reduction=2)(x)
    x = ZeroPaddingShortcut(6, strides=2)(x)
    model = keras.Model(inputs, x)
    images = np.random.default_rng(0).uniform(size=(2, 8, 8, 4)).astype("float32")
    model.save(tmp_path / "layers.keras")
    np.save(tmp_path / "images.npy", images)
    np.save(tmp_path / "expected.npy", model.predict(images, verbose=0))

    out = _python(f"""
        import json
        import numpy as np
        import keras_apps
        import keras
        folder = {str(tmp_path)!r}
        model = keras.saving.load_model(folder + "/layers.keras", safe_mode=True)
        got = model.predict(np.load(folder + "/images.npy"), verbose=0)
        np.testing.assert_allclose(got, np.load(folder + "/expected.npy"), rtol=1e-6, atol=1e-6)
        print(json.dumps(sorted(keras.saving.get_custom_objects())))
    """)
    registered = set(json.loads(out.stdout.splitlines()[-1]))
    missing = expected - registered
    assert not missing, (
        f"{sorted(missing)} are not registered by `import keras_apps`: import their subpackage "
        "in keras_apps/__init__.py"
    )
