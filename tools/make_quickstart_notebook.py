"""Writes notebooks/quickstart.ipynb (run: python tools/make_quickstart_notebook.py)."""

import pathlib

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS = [
    new_markdown_cell(
        "# keras_apps quickstart\n\n"
        "Build a registered model, train it briefly on real images (scikit-learn's 8x8 "
        "handwritten digits, delivered at 32x32), evaluate top-1/top-5 error, export it as a "
        "verified SavedModel and TFLite file, and plot the learning curve. Runs in about a "
        "minute on a laptop CPU."
    ),
    new_code_cell(
        "import csv, pathlib, tempfile\n"
        "import matplotlib.pyplot as plt\n"
        "import keras_apps\n"
        "from keras_apps import data, export, training\n\n"
        "print(len(keras_apps.list_models()), 'registered models')\n"
        "keras_apps.model_info('resnet20_cifar')"
    ),
    new_markdown_cell("## The data: real handwritten digits, normalised, with crop + flip augmentation"),
    new_code_cell(
        "train_ds, info = data.load('digits', 'train', batch_size=16, seed=0)\n"
        "images, labels = next(iter(train_ds))\n"
        "print(info.num_classes, 'classes, images', tuple(info.image_shape))\n"
        "fig, axes = plt.subplots(1, 8, figsize=(12, 2))\n"
        "for ax, image, label in zip(axes, images, labels):\n"
        "    ax.imshow(image[..., 0], cmap='gray'); ax.set_title(int(label)); ax.axis('off')"
    ),
    new_markdown_cell("## Train a CIFAR ResNet-20 (He et al. 2016, Sec. 4.2)"),
    new_code_cell(
        "run_dir = pathlib.Path(tempfile.mkdtemp()) / 'resnet20_digits'\n"
        "result = training.fit('resnet20_cifar', 'digits', epochs=4, batch_size=32,\n"
        "                      learning_rate=0.05, strategy='auto', output_dir=run_dir, verbose=2)\n"
        "result.metrics['validation'], result.metrics['test']"
    ),
    new_markdown_cell("## Evaluate: top-1 / top-5 error on the held-out digits"),
    new_code_cell(
        "metrics = training.evaluate(run_dir / 'model.keras', 'digits', split='test')\n"
        "assert metrics['top1_error'] < 0.5, metrics"
    ),
    new_markdown_cell("## Export: SavedModel (TF Serving signature) and TFLite, each verified"),
    new_code_cell(
        "export_root = run_dir.parent / 'saved_models'\n"
        "for fmt in ('saved_model', 'tflite'):\n"
        "    exported = export.export_model(result.model, fmt, root=export_root)\n"
        "    print(fmt, exported.path, f'{exported.size_bytes:,} bytes', 'max |diff|', exported.max_abs_diff)"
    ),
    new_markdown_cell("## Learning curve"),
    new_code_cell(
        "with open(run_dir / 'history.csv') as f:\n"
        "    rows = list(csv.DictReader(f))\n"
        "column = lambda key: [float(row[key]) for row in rows]\n"
        "epochs = [int(row['epoch']) + 1 for row in rows]\n"
        "fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))\n"
        "ax1.plot(epochs, column('loss'), 'o-', label='train')\n"
        "ax1.plot(epochs, column('val_loss'), 'o-', label='validation (held out of train)')\n"
        "ax1.set_xlabel('epoch'); ax1.set_ylabel('cross-entropy'); ax1.legend()\n"
        "ax2.plot(epochs, [1 - v for v in column('top1')], 'o-', label='train')\n"
        "ax2.plot(epochs, [1 - v for v in column('val_top1')], 'o-', label='validation (held out of train)')\n"
        "ax2.set_xlabel('epoch'); ax2.set_ylabel('top-1 error'); ax2.legend()\n"
        "plt.tight_layout()"
    ),
]


def main():
    notebook = new_notebook(cells=CELLS)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = pathlib.Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"
    nbformat.write(notebook, path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
