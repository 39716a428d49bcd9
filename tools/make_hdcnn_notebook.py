"""Writes notebooks/hdcnn.ipynb (run: python tools/make_hdcnn_notebook.py), without outputs."""

import pathlib

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

#: The toy-size run of tools/hdcnn_experiments.py (its argparse names): digits, one seed,
#: a short schedule, the main HD-CNN variant and a short beta sweep (the compression sweep,
#: k-means over every kernel, is left to the real run).
TOY_ARGS = (
    "[\n"
    "        '--data', 'digits', '--seeds', '0', '--limit', '500', '--block-epochs', '3',\n"
    "        '--fine-epochs', '1', '--finetune-epochs', '1', '--variants', 'hdcnn',\n"
    "        '--stages', 'train,conditional', '--betas', 'inf,2,1', '--timing-images', '100',\n"
    "        '--timing-repeats', '1', '--output', str(toy / 'results'), '--work', str(toy / 'work'),\n"
    "    ]"
)

CELLS = [
    new_markdown_cell(
        "# HD-CNN: hierarchical deep CNNs\n\n"
        "Yan, Zhang, Piramuthu, Jagadeesh, DeCoste, Di, Yu, *HD-CNN: Hierarchical Deep "
        "Convolutional Neural Networks for Large Scale Visual Recognition*, ICCV 2015. A "
        "building block CNN is split into shared layers, a coarse component whose C-way "
        "prediction is summed into K coarse categories, and K fine components, each trained "
        "on the fine categories of its (overlapping) coarse category; the prediction is the "
        "probabilistic average p = sum_k B_k p_k / sum_k B_k.\n\n"
        "This notebook builds an HD-CNN, plots the authors' CIFAR-100 hierarchy (K = 9), runs "
        "the experiment script at toy size on scikit-learn's digits and reads the committed "
        "CIFAR-10 table. About a minute and a half on two CPU cores."
    ),
    new_code_cell(
        "import contextlib, io, logging, os, pathlib, sys, tempfile\n"
        "os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # before TensorFlow is imported\n"
        "import matplotlib.pyplot as plt\n"
        "import numpy as np\n"
        "from IPython.display import Markdown, display\n"
        "import keras_apps\n"
        "from keras_apps import hdcnn\n"
        "from keras_apps.data import data_roots\n\n"
        "logging.getLogger('tensorflow').setLevel(logging.ERROR)\n"
        "REPO = pathlib.Path(keras_apps.__file__).resolve().parents[1]\n"
        "info = keras_apps.model_info('hdcnn')\n"
        "{key: info[key] for key in ('family', 'paper', 'input_shape', 'classes', 'params')}"
    ),
    new_markdown_cell(
        "## Build: shared layers, coarse component, K fine components, probabilistic averaging\n\n"
        "`keras_apps.build('hdcnn')` is the paper's CIFAR-100 model on NIN (shared layers "
        "conv1..drop1). Here: 10 classes, NIN at width 0.25 and the default hierarchy "
        "(K = 3 contiguous groups until one is learned). The outputs are the coarse "
        "probabilities B (N, K) and the averaged class probabilities (N, C)."
    ),
    new_code_cell(
        "model = keras_apps.build('hdcnn', classes=10, building_block_kwargs={'width': 0.25})\n"
        "parts = hdcnn.components(model)\n"
        "print(f'{model.count_params():,} parameters, K = {parts.num_coarse}, sets',\n"
        "      hdcnn.hierarchy_of(model).coarse_sets)\n"
        "for layer in (parts.shared, parts.coarse, parts.aggregation, *parts.fine, parts.scatter,\n"
        "              parts.averaging):\n"
        "    print(f'{layer.name:24s} {type(layer).__name__:22s} -> {layer.output.shape}')\n\n"
        "images = np.random.default_rng(0).uniform(size=(4, 32, 32, 3)).astype('float32')\n"
        "out = model(images)\n"
        "print('coarse', out['coarse'].shape, 'predictions', out['predictions'].shape,\n"
        "      'rows sum to', np.asarray(out['predictions']).sum(axis=1).round(6))\n\n"
        "# Conditional execution: fine component k runs only where B_k >= 1/(beta K).\n"
        "for beta in (float('inf'), 1.0):\n"
        "    result = hdcnn.conditional_predict(model, images, beta=beta)\n"
        "    print(f'beta={beta}: fine components run per image', result.components_run)"
    ),
    new_markdown_cell(
        "## The authors' CIFAR-100 hierarchy (K = 9, overlapping)\n\n"
        "The hierarchy of the paper's CIFAR-100 result, from the authors' release, is read from "
        "`../shared/data/hdcnn/cifar100_nin_k9.json` when that folder is beside the "
        "repository; the package does not copy it (the licence of the authors' repository is "
        "not stated). Left: which fine categories sit in which coarse set (dark: the disjoint "
        "mapping P^d, light: added by the overlap); right: in how many sets each fine "
        "category occurs."
    ),
    new_code_cell(
        "candidates = [root / 'hdcnn' / 'cifar100_nin_k9.json' for root in data_roots()]\n"
        "path = next((p for p in candidates if p.is_file()), None)\n"
        "if path is None:\n"
        "    print('The authors\\' hierarchy is not here (looked for', *candidates, ') - skipped.')\n"
        "else:\n"
        "    tree = hdcnn.Hierarchy.load(path)\n"
        "    print(tree, '-', int(tree.memberships().sum()), 'memberships')\n"
        "    fig, axes = plt.subplots(1, 2, figsize=(16, 5), gridspec_kw={'width_ratios': (2.5, 1)},\n"
        "                             layout='constrained')\n"
        "    tree.plot(ax=list(axes))\n"
        "    plt.show()\n"
        "    paper_model = keras_apps.build('hdcnn', hierarchy=tree, convention='release')\n"
        "    print(f'the release-convention model on it: {paper_model.count_params():,} parameters')"
    ),
    new_markdown_cell(
        "## The experiments at toy size\n\n"
        "`tools/hdcnn_experiments.py` trains the building block, learns the hierarchy on the "
        "held-out part of the training split, pretrains the fine components, fine-tunes the "
        "HD-CNN, and measures the conditional-execution sweep over beta (and, in a full run, "
        "product quantization of the weights: `keras_apps.compression.compress_model`); one "
        "JSON file per finished measurement, and a Markdown table rebuilt from them. Here at "
        "toy size (500 digits, one seed, a few epochs), so the numbers only show the format "
        "and the shape of the trade-off; see the next section for a real run."
    ),
    new_code_cell(
        "sys.path.insert(0, str(REPO / 'tools'))\n"
        "import hdcnn_experiments\n\n"
        "toy = pathlib.Path(tempfile.mkdtemp())\n"
        "with contextlib.redirect_stdout(io.StringIO()):  # it prints the table too\n"
        f"    hdcnn_experiments.main({TOY_ARGS})\n"
        "display(Markdown((toy / 'results' / 'digits' / 'README.md').read_text()))"
    ),
    new_markdown_cell(
        "## The CIFAR-10 table\n\n"
        "`python tools/hdcnn_experiments.py --data cifar10 --seeds 0,1,2` (CIFAR-10 from "
        "`../shared/data`, NIN width 0.25, K = 3, gamma = 5) writes one JSON file per run and "
        "the table `results/hdcnn/cifar10/README.md`: building block, model averaging, HD-CNN "
        "and its ablations (no consistency term, disjoint coarse categories, no shared "
        "layers), then the conditional-execution and compression sweeps, mean ± standard "
        "deviation over the seeds."
    ),
    new_code_cell(
        "table = REPO / 'results' / 'hdcnn' / 'cifar10' / 'README.md'\n"
        "if table.is_file():\n"
        "    display(Markdown(table.read_text()))\n"
        "else:\n"
        "    print(f'{table} is not there yet: run python tools/hdcnn_experiments.py --data cifar10')"
    ),
]


def main():
    for number, cell in enumerate(CELLS):
        cell["id"] = f"hdcnn-{number:02d}"
    notebook = new_notebook(cells=CELLS)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = pathlib.Path(__file__).resolve().parents[1] / "notebooks" / "hdcnn.ipynb"
    nbformat.write(notebook, path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
