"""Writes notebooks/growing.ipynb (run: python tools/make_growing_notebook.py), without outputs."""

import pathlib

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS = [
    new_markdown_cell(
        "# Growing a Brain: developmental networks\n\n"
        "Wang, Ramanan, Hebert, *Growing a Brain: Fine-Tuning by Increasing Model Capacity*, "
        "CVPR 2017. Instead of fine-tuning a network of fixed capacity, grow it while "
        "transferring: a new top layer (DA-CNN), new units beside the top layer (WA-CNN), "
        "both (DWA-CNN), or new units in the two top layers (WWA-CNN); each block of a widened "
        "layer is L2-normalised and scaled so that old and new units learn at a reconciled "
        "pace.\n\n"
        "This notebook shows the normalise-and-scale layer, the four variants on AlexNet, a "
        "whole transfer on scikit-learn's digits (source: digits 0-4, target: digits 5-9) with "
        "learning without forgetting, the analyses, cumulative growth, and the committed "
        "CIFAR-10 / Fashion-MNIST table. About a minute on two CPU cores."
    ),
    new_code_cell(
        "import logging, os, pathlib, tempfile\n"
        "os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # before TensorFlow is imported\n"
        "import numpy as np\n"
        "from IPython.display import Image, Markdown, display\n"
        "import keras_apps\n"
        "from keras_apps import data, growth, training\n"
        "from keras_apps.growth import analysis\n"
        "from keras_apps.layers import L2NormalizeScale\n\n"
        "logging.getLogger('tensorflow').setLevel(logging.ERROR)\n"
        "REPO = pathlib.Path(keras_apps.__file__).resolve().parents[1]\n"
        "work = pathlib.Path(tempfile.mkdtemp())"
    ),
    new_markdown_cell(
        "## L2-normalise and scale (Eq. 1-2)\n\n"
        "`y_i = gamma_i x_i / ||x||_2` with a learned per-channel `gamma` initialised to 10 "
        "(a norm of 1 makes learning slow): every sample's output norm equals the scale."
    ),
    new_code_cell(
        "layer = L2NormalizeScale(scale_init=10.0)\n"
        "x = np.random.default_rng(0).normal(size=(4, 32)).astype('float32') * [[1], [10], [100], [0]]\n"
        "np.linalg.norm(np.asarray(layer(x)), axis=1)  # 10, 10, 10 and 0 for the all-zero sample"
    ),
    new_markdown_cell(
        "## The four variants on AlexNet\n\n"
        "`keras_apps.grow(model, mode, at=..., units=...)` works on any registered family whose "
        "representation ends in Dense or global-pooled layers; the old layers keep exactly their "
        "weights, the old classifier lives on as the `task0` head. Here AlexNet at its smallest "
        "input (67x67), untrained, with the paper's unit counts."
    ),
    new_code_cell(
        "alexnet = keras_apps.build('alexnet', input_shape=(67, 67, 3), classes=10)\n"
        "rows = ['| variant | new layers | parameters |', '|---|---|---|',\n"
        "        f'| AlexNet | | {alexnet.count_params():,} |']\n"
        "for mode, units in (('depth', 4096), ('width', 1024), ('depth_width', 1024), ('recursive_width', 1024)):\n"
        "    grown = keras_apps.grow(alexnet, mode, units=units, classes=5)\n"
        "    rows.append(f'| {grown.name} | {\", \".join(growth.new_layers(grown))} | {grown.count_params():,} |')\n"
        "display(Markdown('\\n'.join(rows)))"
    ),
    new_markdown_cell(
        "## A whole transfer on digits\n\n"
        "A source network (NIN, width 0.25) is trained on digits 0-4. WA-CNN widens its top "
        "representation layer (`cccp5`) by 16 units and fine-tunes everything on digits 5-9 "
        "(scenario `all`, new layers at 10x the learning rate, SGD momentum 0.9, weight decay "
        "5e-4, step schedule), while a callback records the linear-probe accuracy of the old, "
        "new and combined units (the paper's Fig. 6). The source head `task0` is not trained on "
        "the target: learning without forgetting reads the source accuracy from it."
    ),
    new_code_cell(
        "source_task, target_task = [0, 1, 2, 3, 4], [5, 6, 7, 8, 9]\n"
        "source = training.fit('nin_cifar', 'digits', classes=source_task, build_kwargs={'width': 0.25},\n"
        "                      epochs=4, limit=600, learning_rate=0.05, output_dir=work / 'source',\n"
        "                      verbose=0).model\n"
        "before = training.evaluate(source, 'digits', classes=source_task, verbose=0)['top1_accuracy']\n"
        "grown = keras_apps.grow(source, 'width', units=16, classes=5, seed=0)\n"
        "print(growth.top_representation_layer(source), '->', growth.new_layers(grown))\n\n"
        "def arrays(subset):\n"
        "    ds, _ = data.load('digits', 'train', classes=target_task, batch_size=256, augment=False,\n"
        "                      shuffle=False, subset=subset, validation_fraction=0.2, limit=400)\n"
        "    return tuple(np.concatenate(part) for part in zip(*[(np.asarray(x), np.asarray(y)) for x, y in ds]))\n\n"
        "train, val = arrays('training'), arrays('validation')\n"
        "width = source.get_layer('cccp5').filters\n"
        "groups = {'old (cccp5)': range(width), 'new (cccp5+)': range(width, width + 16), 'combined': range(width + 16)}\n"
        "curves = analysis.UnitLearningCurves('cccp5_concat_g1', groups, train, val)\n"
        "result = growth.finetune(grown, 'digits', classes=target_task, scenario='all', epochs=3, limit=400,\n"
        "                         validation_fraction=0.2, output_dir=work / 'target', callbacks=[curves],\n"
        "                         verbose=0)\n"
        "after = training.evaluate(result.model, 'digits', classes=source_task, output='task0', verbose=0)\n"
        "print(f\"target test accuracy {result.metrics['test']['top1_accuracy']:.3f}; source task: \"\n"
        "      f\"{before:.3f} before, {after['top1_accuracy']:.3f} after target fine-tuning (task0 head)\")"
    ),
    new_code_cell(
        "display(Image(analysis.learning_curves_plot(curves.curves, work / 'curves.png', epochs=curves.epochs)))\n"
        "features, labels = analysis.layer_features(result.model, 'cccp5_concat_g1', val)\n"
        "embedding, path = analysis.tsne_plot(features, labels, work / 'tsne.png', title='cccp5 + cccp5+ (validation)')\n"
        "display(Image(path))\n"
        "pixels = np.concatenate([np.asarray(x) for x, _ in data.load(\n"
        "    'digits', 'train', classes=target_task, batch_size=256, augment=False, shuffle=False,\n"
        "    subset='validation', validation_fraction=0.2, limit=400, preprocessing='raw')[0]])\n"
        "units = [0, 1, width, width + 1]\n"
        "display(Image(analysis.top_activating_grid(pixels, features, units, work / 'top5.png', k=5,\n"
        "                                           row_labels=['old #0', 'old #1', 'new #0', 'new #1'])))"
    ),
    new_markdown_cell(
        "## Cumulative growth\n\n"
        "A grown network grows again for a second target task: the new units carry the suffix "
        "`_g2`, the first target's classifier becomes the `task1` head, the source's stays `task0`."
    ),
    new_code_cell(
        "again = keras_apps.grow(result.model, 'width', units=8, classes=10, seed=1)\n"
        "print(sorted(again.output), growth.generation(again), growth.new_layers(again))\n"
        "retrained = growth.retrain_source(result.model, 'digits', classes=source_task, epochs=1, limit=300,\n"
        "                                  output_dir=work / 'lwf', verbose=0)\n"
        "print('source accuracy after re-training the augmented layers on source data:',\n"
        "      round(retrained.metrics['test']['top1_accuracy'], 3))"
    ),
    new_markdown_cell(
        "## The committed experiments\n\n"
        "`python tools/growing_experiments.py --seeds 0,1,2` (CIFAR-10 source and target 1, "
        "Fashion-MNIST target 2, three seeds): the table as measured."
    ),
    new_code_cell(
        "table = REPO / 'results' / 'growing' / 'cifar10' / 'README.md'\n"
        "if table.is_file():\n"
        "    display(Markdown(table.read_text().split('## Analyses')[0]))\n"
        "    for png in sorted((table.parent / 'figures').glob('*.png')):\n"
        "        display(Image(png))\n"
        "else:\n"
        "    print('not run yet: python tools/growing_experiments.py --seeds 0,1,2')"
    ),
]


def main():
    notebook = new_notebook(cells=CELLS)
    notebook.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    path = pathlib.Path(__file__).resolve().parents[1] / "notebooks" / "growing.ipynb"
    nbformat.write(notebook, path)
    print(path)


if __name__ == "__main__":
    main()
