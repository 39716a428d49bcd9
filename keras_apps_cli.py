"""The ``keras-apps`` command line (the console script points here, not into ``keras_apps``).

    keras-apps list [PATTERN]                 registered models (fnmatch pattern)
    keras-apps info NAME                      family, paper, input, classes, params, stages
    keras-apps summary NAME [--input-shape]   Keras summary of the built model
    keras-apps datasets                       datasets keras_apps.data can read
    keras-apps train NAME --data D --epochs N --batch-size B --strategy S --output DIR
    keras-apps evaluate MODEL.keras --data D  top-1 / top-5 error
    keras-apps export NAME_OR_FILE --format keras|saved_model|tflite|tflite_int8|serving
    keras-apps analyze [PATTERN] --batch-sizes 1,8,32 --output DIR
    keras-apps [--debug] [--verbose] COMMAND ...

Why a module outside the package: ``import keras_apps`` imports Keras and TensorFlow (it
registers the custom layers, so ``.keras`` files load in ``safe_mode``). This launcher imports
neither: ``--help`` and ``list``/``info`` (answered from ``keras_apps/_model_index.json``,
written by ``python -m keras_apps._cli_index``) never load TensorFlow, and every other command
sets the TensorFlow log level before TensorFlow is first imported. The commands themselves are
in :mod:`keras_apps.cli`.

Plug-in commands. A plug-in is a module with a docstring (its first line is the help shown by
``keras-apps --help``) and a function ``register(parser)`` that adds the command's arguments to
the ``argparse.ArgumentParser`` it is given and sets ``parser.set_defaults(func=run)``, where
``run(args)`` returns the exit status (None means 0). Two ways in, one mechanism:

* a method package of this project: ``keras_apps/<package>/cli.py`` becomes the command
  ``<package>`` (``_`` written as ``-``), found by its file, nothing to list anywhere; a
  package whose method has several verbs of its own may instead name its top-level commands
  in a module-level tuple ``COMMANDS = ("grow", "finetune")`` (read from the source, not
  imported), each registered by ``register_<command>(parser)`` whose docstring's first line
  is its help;
* any installed distribution: an entry point in the group ``keras_apps.commands``, e.g. in
  its ``pyproject.toml``: ``[project.entry-points."keras_apps.commands"]``
  ``mycmd = "my_package.cli:register"`` (the entry-point name is the command name).

A plug-in module is imported only when its command runs, so it may import TensorFlow at the
top; ``--help`` reads its docstring from the source file. ``--debug`` and ``--verbose`` are
reserved for every command. A name used twice (or a built-in name) is an error.

Errors. A user error (``ValueError``, ``TypeError``, ``OSError`` such as a missing, unreadable
or existing file or a missing dataset, ``keras_apps.export.ExportError``) prints one line
``keras-apps COMMAND: error: ...`` and exits with status 2; bad flags do the same through
argparse. ``--debug`` shows the traceback instead. Ctrl-C exits with status 130 after one line
(``train``: re-running the same command resumes from the last finished epoch).

Logging. Quiet by default: TensorFlow's C++ log (``TF_CPP_MIN_LOG_LEVEL=3`` unless already set),
its Python and absl loggers below ERROR and the warnings issued inside Keras, TensorFlow and
tensorflow-datasets are hidden; ``--verbose`` shows them all. Keras' progress bar is used when
stdout is a terminal; piped output gets one plain line per epoch (no ANSI codes).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import difflib
import fnmatch
import importlib
import importlib.metadata
import importlib.util
import math
import json
import logging
import os
import pathlib
import re
import sys
import warnings

PROG = "keras-apps"
ENTRY_POINT_GROUP = "keras_apps.commands"
PACKAGE = "keras_apps"
MODEL_INDEX = "_model_index.json"

# Static copies, so that --help imports nothing heavy; tests/test_cli.py checks each against
# the library (keras_apps.training.STRATEGIES, LR_SCHEDULES, PRECISIONS, keras_apps.export.FORMATS,
# keras_apps.data.CHANNEL_CHOICES).
STRATEGIES = ("auto", "mirrored", "one-device", "multi-worker")
LR_SCHEDULES = ("constant", "step", "cosine")
PRECISIONS = ("float32", "bfloat16", "float16")
EXPORT_FORMATS = ("keras", "saved_model", "tflite", "tflite_int8", "serving")
CHANNEL_CHOICES = (1, 3)

BUILTIN_COMMANDS = ("list", "info", "summary", "datasets", "train", "evaluate", "export", "analyze")
RESUME_HINT = "interrupted; re-run the same command to resume from the last finished epoch"

# Warnings issued inside these libraries are hidden unless --verbose.
_QUIET_MODULES = r"(keras|tensorflow|tf_keras|tensorflow_datasets|absl|google\.protobuf)(\..*)?"


@dataclasses.dataclass(frozen=True)
class Plugin:
    """A plug-in command: ``module:attr`` is its ``register(parser)`` function."""

    name: str
    module: str
    attr: str
    origin: str
    source: pathlib.Path | None

    def help(self) -> str:
        if self.source is not None:
            try:
                tree = ast.parse(self.source.read_text(encoding="utf-8"))
            except (OSError, SyntaxError, ValueError):
                tree = None
            doc = None
            if tree is not None and self.attr != "register":
                doc = next((ast.get_docstring(node) for node in tree.body
                            if isinstance(node, ast.FunctionDef) and node.name == self.attr), None)
            elif tree is not None:
                doc = ast.get_docstring(tree)
            if doc and doc.strip():
                return doc.strip().splitlines()[0]
        return f"plug-in command ({self.origin})"


def _declared_commands(path: pathlib.Path) -> tuple[str, ...] | None:
    """The ``COMMANDS = ("a", "b")`` tuple of a plug-in source file (None: not declared)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "COMMANDS" for target in node.targets
        ):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                value = None
            if not (isinstance(value, tuple) and value and all(isinstance(v, str) and v for v in value)):
                raise ValueError(f"{path}: COMMANDS must be a tuple of command names, got {ast.unparse(node.value)}.")
            return value
    return None


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit status 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ---------------------------------------------------------------------------------- types


def _shape(text: str) -> tuple:
    try:
        values = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a shape like 32,32,3, got {text!r}") from None
    if min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive sizes like 32,32,3, got {text!r}")
    return values


def _int_list(text: str) -> tuple:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 1,8,32, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def _read_image(path):
    """An image file (JPEG, PNG, BMP, GIF) as a uint8 RGB array, for the plug-in commands."""
    import numpy as np
    import tensorflow as tf

    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No image file at {path}.")
    try:
        image = tf.io.decode_image(tf.io.read_file(str(path)), channels=3, expand_animations=False)
    except tf.errors.InvalidArgumentError:
        raise ValueError(f"{path} is not a JPEG, PNG, BMP or GIF image.") from None
    return np.asarray(image)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction 0 <= F < 1 such as 0.1, got {text!r}")
    return value


def _open_fraction(expected: str):
    """An argparse type for a number strictly between 0 and 1; a bad value is the error
    ``expected <expected>, got '<text>'``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not 0.0 < value < 1.0:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


def _formats(text: str) -> tuple:
    formats = tuple(f for f in text.split(",") if f)
    unknown = [f for f in formats if f not in EXPORT_FORMATS]
    if unknown or not formats:
        raise argparse.ArgumentTypeError(
            f"unknown export format(s) {', '.join(unknown) or repr(text)}; choose from "
            f"{', '.join(EXPORT_FORMATS)} (comma-separated)"
        )
    return formats


# -------------------------------------------------------------------------------- plug-ins


def _package_dirs() -> list[pathlib.Path]:
    """Folders of the ``keras_apps`` package, found without importing it."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return []
    return [pathlib.Path(p) for p in spec.submodule_search_locations]


def _entry_points():
    return importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)


def _module_source(module: str) -> pathlib.Path | None:
    """The ``.py`` file of a dotted module name, located without importing any of it."""
    top, *rest = module.split(".")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if not rest:
        return pathlib.Path(spec.origin) if spec.origin and spec.origin.endswith(".py") else None
    for folder in spec.submodule_search_locations or ():
        path = pathlib.Path(folder).joinpath(*rest)
        for candidate in (path.with_suffix(".py"), path / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


def discover_plugins() -> dict[str, Plugin]:
    """Plug-in commands by name: ``keras_apps/<package>/cli.py`` files, then entry points of
    the group :data:`ENTRY_POINT_GROUP`. A name given twice raises ValueError."""
    found: dict[str, Plugin] = {}

    def add(plugin: Plugin) -> None:
        if plugin.name in BUILTIN_COMMANDS or plugin.name in found:
            other = "a built-in command" if plugin.name in BUILTIN_COMMANDS else found[plugin.name].origin
            raise ValueError(
                f"plug-in command {plugin.name!r} ({plugin.origin}) clashes with {other}; "
                "command names must be unique."
            )
        found[plugin.name] = plugin

    for folder in _package_dirs():
        for path in sorted(folder.glob("*/cli.py")):
            package = path.parent.name
            if package.startswith(("_", ".")) or not (path.parent / "__init__.py").is_file():
                continue
            module = f"{PACKAGE}.{package}.cli"
            commands = _declared_commands(path)
            if commands is None:
                add(Plugin(package.replace("_", "-"), module, "register", module, path))
            for command in commands or ():
                attr = f"register_{command.replace('-', '_')}"
                add(Plugin(command, module, attr, f"{module}:{attr}", path))
    for entry in _entry_points():
        module, _, attr = entry.value.partition(":")
        module, attr = module.strip(), attr.strip() or "register"
        origin = f"entry point {entry.name} = {entry.value}"
        add(Plugin(entry.name, module, attr, origin, _module_source(module)))
    return found


def _load_plugin(plugin: Plugin, parser: argparse.ArgumentParser) -> None:
    try:
        register = getattr(importlib.import_module(plugin.module), plugin.attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(
            f"plug-in command {plugin.name!r} ({plugin.origin}) could not be loaded: "
            f"{type(err).__name__}: {err}"
        ) from err
    register(parser)
    if not callable(parser.get_default("func")):
        raise ValueError(
            f"plug-in command {plugin.name!r} ({plugin.origin}) did not set its handler "
            "(parser.set_defaults(func=run))."
        )


# ---------------------------------------------------------------------------------- parser


def _global_options(suppress: bool) -> argparse.ArgumentParser:
    default = argparse.SUPPRESS if suppress else False
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--debug", action="store_true", default=default,
                         help="show the traceback of an error")
    options.add_argument("--verbose", action="store_true", default=default,
                         help="show TensorFlow's log lines and library warnings")
    return options


def _command_name(argv) -> str | None:
    for token in argv:
        if token == "--":
            return None
        if not token.startswith("-"):
            return token
    return None


def _data_flags(p: argparse.ArgumentParser, *, image_size_help="resize images, e.g. 32,32"):
    """The data flags of ``train``, which every command that reads a dataset shares (``tune``,
    ``optimize``): --data, --data-dir, --download, --image-size, --channels, --limit,
    --validation-fraction."""
    p.add_argument("--data", default="digits", help="dataset name (keras-apps datasets); default digits")
    p.add_argument("--data-dir", default=None, help="where the dataset's files are")
    p.add_argument("--download", action="store_true", help="download the dataset if it is missing")
    p.add_argument("--image-size", type=_shape, default=None, help=image_size_help)
    p.add_argument("--channels", type=int, choices=CHANNEL_CHOICES, default=None,
                   help="deliver the images with 1 (BT.601 luma of RGB) or 3 (grey repeated) "
                        "channels; default: the dataset's own")
    p.add_argument("--limit", type=_positive_int, default=None, help="use only the first N images per split")
    p.add_argument("--validation-fraction", type=_fraction, default=0.1,
                   help="share of the training split held out for validation (default 0.1; 0: none)")


def build_parser(argv=()) -> argparse.ArgumentParser:
    """The full parser; the plug-in named by the command word of ``argv`` (if any) is
    imported and registers its arguments, the others are listed by name and help only."""
    parser = _Parser(
        prog=PROG,
        description="Landmark CNN papers as Keras 3 applications.",
        parents=[_global_options(suppress=False)],
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    options = _global_options(suppress=True)

    def command(name, help, handler, interrupted="interrupted"):
        p = sub.add_parser(name, help=help, description=help, parents=[options])
        p.set_defaults(func=handler, interrupted=interrupted)
        return p

    p = command("list", "list registered models", _cmd_list)
    p.add_argument("pattern", nargs="?", default=None, help="fnmatch pattern, e.g. 'resnet*'")

    p = command("info", "model metadata as JSON", _cmd_info)
    p.add_argument("name")

    p = command("summary", "Keras summary of a built model", "keras_apps.cli:summary")
    p.add_argument("name")
    p.add_argument("--input-shape", type=_shape, default=None, help="e.g. 224,224,3")
    p.add_argument("--classes", type=_positive_int, default=None, help="number of classes")

    command("datasets", "datasets keras_apps.data can read", "keras_apps.cli:datasets")

    p = command("train", "train a registered model", "keras_apps.cli:train", RESUME_HINT)
    p.add_argument("name", help="registered model name (keras-apps list)")
    _data_flags(p)
    p.add_argument("--epochs", type=_positive_int, default=10)
    p.add_argument("--batch-size", type=_positive_int, default=64)
    p.add_argument("--strategy", choices=STRATEGIES, default="auto")
    p.add_argument("--precision", choices=PRECISIONS, default="float32",
                   help="compute precision (mixed precision keeps float32 weights)")
    p.add_argument("--output", default=None, help="run folder (default runs/NAME)")
    p.add_argument("--learning-rate", type=float, default=0.05)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES, default="cosine")
    p.add_argument("--trainable", default=None, metavar="PATTERN",
                   help="train only the layers matching this pattern, e.g. 'fc7*|fc8*'")
    p.add_argument("--width", type=float, default=None, help="width multiplier (NIN)")
    p.add_argument("--aux-logits", action="store_true",
                   help="train with auxiliary classifiers (GoogLeNet); the saved model has none")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--export", type=_formats, default=(),
                   help="after training, export to these formats, e.g. saved_model,tflite")
    p.add_argument("--export-dir", default="saved_models", help="where exports land")
    p.add_argument("--overwrite", action="store_true",
                   help="train again into a finished run's --output and replace earlier exports "
                        "(only after the new ones verify)")

    p = command("evaluate", "top-1/top-5 error of a .keras model", "keras_apps.cli:evaluate")
    p.add_argument("model", help="a .keras file (e.g. runs/NAME/model.keras)")
    p.add_argument("--data", default="digits")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--download", action="store_true", help="download the dataset if it is missing")
    p.add_argument("--split", default=None, help="default: test (or validation)")
    p.add_argument("--batch-size", type=_positive_int, default=64)
    p.add_argument("--precision", choices=PRECISIONS, default="float32")
    p.add_argument("--image-size", type=_shape, default=None)
    p.add_argument("--channels", type=int, choices=CHANNEL_CHOICES, default=None,
                   help="1 or 3 channels; default: the run's config.json, else the dataset's own")
    p.add_argument("--limit", type=_positive_int, default=None)
    p.add_argument("--output", default=None, help="write the metrics as JSON to this file")

    p = command("export", "export a registered model or a .keras file", "keras_apps.cli:export")
    p.add_argument("model", help="registry name or .keras file")
    p.add_argument("--format", required=True, choices=EXPORT_FORMATS)
    p.add_argument("--output", default=None, help="target path (default under --root)")
    p.add_argument("--root", default="saved_models")
    p.add_argument("--version", type=_positive_int, default=None, help="serving version (default: next)")
    p.add_argument("--weights", default=None, help="weights file for a registry name")
    p.add_argument("--input-shape", type=_shape, default=None, help="for a registry name")
    p.add_argument("--classes", type=_positive_int, default=None, help="for a registry name")
    p.add_argument("--data", default=None, help="representative data for tflite_int8")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--download", action="store_true", help="download --data if it is missing")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing export (only after the new one verifies)")

    p = command("analyze", "params/FLOPs/memory/latency table and charts", "keras_apps.cli:analyze")
    p.add_argument("pattern", nargs="?", default=None)
    p.add_argument("--batch-sizes", type=_int_list, default=(1, 8, 32))
    p.add_argument("--output", default="analysis", help="folder of the table and charts")
    p.add_argument("--input-size", type=_positive_int, default=None)
    p.add_argument("--repeats", type=_positive_int, default=5)
    p.add_argument("--no-measure", action="store_true", help="skip latency measurement")

    chosen = _command_name(argv)
    for plugin in discover_plugins().values():
        p = sub.add_parser(plugin.name, help=plugin.help(), parents=[options])
        p.set_defaults(interrupted="interrupted")
        if plugin.name == chosen:
            _load_plugin(plugin, p)
    return parser


# ------------------------------------------------------------------------- list and info


def _model_index() -> dict | None:
    for folder in _package_dirs():
        path = folder / MODEL_INDEX
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))
    return None


def _cmd_list(args) -> int:
    index = _model_index()
    if index is None:  # an installation without the index: ask the registry
        import keras_apps

        index = {name: keras_apps.model_info(name) for name in keras_apps.list_models()}
    names = [n for n in index if args.pattern is None or fnmatch.fnmatchcase(n, args.pattern)]
    if not names:
        print(f"No model matches {args.pattern!r}.", file=sys.stderr)
        return 1
    for name in names:
        info = index[name]
        print(f"{name:22s} {info['family']:14s} {info['params']:>13,d} params  "
              f"input {'x'.join(map(str, info['input_shape']))}")
    return 0


def _cmd_info(args) -> int:
    index = _model_index()
    if index is None:
        import keras_apps

        from keras_apps._cli_index import jsonable

        info = jsonable(keras_apps.model_info(args.name))
    elif args.name in index:
        info = index[args.name]
    else:
        close = difflib.get_close_matches(args.name, list(index), n=5, cutoff=0.4)
        hint = f" Closest names: {', '.join(close)}." if close else ""
        raise ValueError(
            f"Unknown model {args.name!r}.{hint} `keras-apps list` lists all {len(index)} "
            "registered names."
        )
    print(json.dumps(info, indent=2))
    return 0


# ------------------------------------------------------------------------------ running


@contextlib.contextmanager
def _logging(verbose: bool):
    """Quiet (or, with ``verbose``, chatty) TensorFlow and library logs; restored on exit."""
    saved_env = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from absl import logging as absl_logging

    saved_absl = absl_logging.get_verbosity()
    tf_logger = logging.getLogger("tensorflow")
    saved_tf = tf_logger.level
    if not verbose:
        absl_logging.set_verbosity(absl_logging.ERROR)
        tf_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            if not verbose:
                warnings.filterwarnings("ignore", module=_QUIET_MODULES)
            yield
    finally:
        absl_logging.set_verbosity(saved_absl)
        tf_logger.setLevel(saved_tf)
        if saved_env is None:
            os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
        else:
            os.environ["TF_CPP_MIN_LOG_LEVEL"] = saved_env


def _is_user_error(err: BaseException) -> bool:
    if isinstance(err, (ValueError, TypeError, OSError)):
        return True
    export = sys.modules.get("keras_apps.export")
    return export is not None and isinstance(err, export.ExportError)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _handler(func):
    if callable(func):
        return func
    module, _, attr = func.partition(":")
    return getattr(importlib.import_module(module), attr)


#: Lines TensorFlow's C++ runtime writes while it loads, whatever TF_CPP_MIN_LOG_LEVEL says
#: (TF 2.21 on a CPU with oneDNN: the oneDNN notice and abseil's pre-initialisation warning).
_TF_LOAD_LINES = re.compile(r"^([IWE]\d{4} |WARNING: All log messages before absl::InitializeLog\(\))")
#: Commands answered without TensorFlow.
_LIGHT_COMMANDS = (None, "list", "info")


@contextlib.contextmanager
def _tensorflow_load_lines_dropped():
    """Runs the block with file descriptor 2 captured, then writes what it captured back
    without TensorFlow's load-time log lines (``_TF_LOAD_LINES``); anything else is kept, in
    order. Used around what may import TensorFlow first: a plug-in's import, the command."""
    if "tensorflow" in sys.modules:
        yield
        return
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode(errors="replace").splitlines(keepends=True):
                if not _TF_LOAD_LINES.match(line):
                    sys.stderr.write(line)
            sys.stderr.flush()


def main(argv=None) -> int:
    """Runs one command line; returns the exit status (0 ok, 2 user error, 130 Ctrl-C)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    before = argv[: argv.index("--")] if "--" in argv else argv
    debug, verbose = "--debug" in before, "--verbose" in before
    prefix = " ".join([PROG, _command_name(argv) or ""]).strip()
    args = None
    with _logging(verbose):
        try:
            quiet = not verbose and _command_name(argv) not in _LIGHT_COMMANDS
            with _tensorflow_load_lines_dropped() if quiet else contextlib.nullcontext():
                args = build_parser(argv).parse_args(argv)  # may import a plug-in
                if quiet:
                    import tensorflow  # noqa: F401  (loaded here, its load lines dropped)
            prefix = f"{PROG} {args.command}"
            status = _handler(args.func)(args)
        except SystemExit as exit:
            if exit.code is None or isinstance(exit.code, int):
                return exit.code or 0
            print(exit.code, file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            if debug:
                raise
            print(f"{prefix}: {getattr(args, 'interrupted', 'interrupted')}", file=sys.stderr)
            return 130
        except Exception as err:
            if debug or not _is_user_error(err):
                raise
            print(f"{prefix}: error: {_one_line(err)}", file=sys.stderr)
            return 2
    return 0 if status is None else int(status)


if __name__ == "__main__":
    sys.exit(main())
