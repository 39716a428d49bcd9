"""Writes notebooks/overfeat.ipynb (run: python tools/make_overfeat_notebook.py), without outputs."""

import pathlib

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS = [
    new_markdown_cell(
        "# OverFeat: classification, localization and detection with one network\n\n"
        "Sermanet, Eigen, Zhang, Mathieu, Fergus, LeCun, *OverFeat: Integrated Recognition, "
        "Localization and Detection using Convolutional Networks*, ICLR 2014. A convolutional "
        "network trained on fixed-size crops is run densely over whole images at several "
        "scales: its fully connected layers become convolutions, every output position is a "
        "window, offset max pooling makes the windows 3x denser, a box regressor on the same "
        "features predicts a box per window, and a greedy merge turns the windows' boxes into "
        "detections.\n\n"
        "This notebook shows the networks and their dense form, offset pooling, the greedy merge, "
        "a small detector trained on BCCD (blood cells) with its pictures and metrics, and the "
        "committed BCCD table. A few minutes on two CPU cores."
    ),
    new_code_cell(
        "import logging, os, pathlib, tempfile\n"
        "os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # before TensorFlow is imported\n"
        "import numpy as np\n"
        "import matplotlib.pyplot as plt\n"
        "from IPython.display import Image, Markdown, display\n"
        "import keras_apps\n"
        "from keras_apps import data, overfeat\n"
        "from keras_apps.layers import OffsetMaxPooling2D\n\n"
        "logging.getLogger('tensorflow').setLevel(logging.ERROR)\n"
        "REPO = pathlib.Path(keras_apps.__file__).resolve().parents[1]\n"
        "work = pathlib.Path(tempfile.mkdtemp())"
    ),
    new_markdown_cell(
        "## The networks and their dense output sizes\n\n"
        "The paper's fast (231x231) and accurate (221x221) models, and the narrow variants "
        "(every width / 8) used below. `overfeat.output_size` is the authors' formula; on the "
        "six scales of the paper's Table 5 the accurate model gives 1x1 to 7x10 classifier maps, "
        "3x3 to 21x30 with offset pooling."
    ),
    new_code_cell(
        "rows = ['| model | input | parameters |', '|---|---|---|']\n"
        "for name in keras_apps.list_models('overfeat*'):\n"
        "    info = keras_apps.model_info(name)\n"
        "    rows.append(f\"| {name} | {info['input_shape'][0]} | {info['params']:,} |\")\n"
        "display(Markdown('\\n'.join(rows)))\n"
        "[(h, w, overfeat.output_size('overfeat_accurate', h), overfeat.output_size('overfeat_accurate', w),\n"
        "  overfeat.output_size('overfeat_accurate', h, offset_pooling=True))\n"
        " for h, w in overfeat.SCALES['overfeat_accurate']]"
    ),
    new_markdown_cell(
        "## Offset max pooling\n\n"
        "Pooling 3x3 at every offset (dx, dy) in {0, 1, 2}^2 and interleaving the nine results is "
        "a stride-1 pooling: the output stride of the accurate network falls from 36 to 12 pixels."
    ),
    new_code_cell(
        "x = np.random.default_rng(0).normal(size=(1, 9, 9, 1)).astype('float32')\n"
        "pooled = np.asarray(OffsetMaxPooling2D(pool_size=3)(x))[0, ..., 0]\n"
        "shifted = x[0, 1:, 2:, 0][:6, :6].reshape(2, 3, 2, 3).max(axis=(1, 3))  # offset (dy, dx) = (1, 2)\n"
        "assert np.allclose(pooled[1::3, 2::3][:2, :2], shifted)\n"
        "pooled.shape  # (7, 7): every window start, stride 1"
    ),
    new_markdown_cell(
        "## Dense evaluation\n\n"
        "`to_dense` keeps the weights: at the training size it equals the classifier; on a larger "
        "image every position is a window (drawn: the first row of windows on a 317x389 input, "
        "without and with offset pooling)."
    ),
    new_code_cell(
        "classifier = keras_apps.build('overfeat_accurate_small', classes=4)\n"
        "dense = overfeat.to_dense(classifier)\n"
        "crop = np.random.default_rng(1).normal(size=(1, 221, 221, 3)).astype('float32')\n"
        "difference = np.abs(np.asarray(dense(crop))[:, 0, 0] - np.asarray(classifier(crop))).max()\n"
        "assert difference < 1e-5, difference\n"
        "fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))\n"
        "for ax, offset in zip(axes, (False, True)):\n"
        "    windows = overfeat.window_boxes(overfeat.to_dense(classifier, offset_pooling=offset), 317, 389)\n"
        "    ax.add_patch(plt.Rectangle((0, 0), 389, 317, fill=False, ec='k'))\n"
        "    for x1, y1, x2, y2 in windows[0]:\n"
        "        ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, alpha=0.6))\n"
        "    ax.set(xlim=(-5, 395), ylim=(322, -5), title=f'offset pooling {offset}: {windows.shape[:2]} windows')\n"
        "plt.show()"
    ),
    new_markdown_cell(
        "## Greedy merge\n\n"
        "Boxes of the same class merge, the pair with the smallest match score first (centre "
        "distance over the mean side + 1 - intersection / smaller area), into the mean of the "
        "boxes with the summed confidence, until the smallest score exceeds the threshold."
    ),
    new_code_cell(
        "boxes = np.array([[10, 10, 60, 60], [14, 12, 62, 64], [12, 8, 58, 62], [100, 20, 150, 70], [104, 22, 152, 74]], 'float32')\n"
        "scores = np.array([0.9, 0.8, 0.6, 0.7, 0.5], 'float32')\n"
        "merged, merged_scores, _ = overfeat.greedy_merge(boxes, scores, threshold=0.5)\n"
        "merged, merged_scores  # two boxes: the means of 3 and of 2 boxes, scores 2.3 and 1.2"
    ),
    new_markdown_cell(
        "## A small detector on BCCD\n\n"
        "`overfeat.fit` trains the classifier (3 cell types + background) on windows of the "
        "training images at several scales, then the box regressor on the frozen features, and "
        "chooses the detection thresholds on validation images. Tiny here (a few images and "
        "epochs): the committed run below is the measured one."
    ),
    new_code_cell(
        "result = overfeat.fit('overfeat_accurate_small', 'bccd', scales=(0.7, 1.0, 2.0), epochs=3,\n"
        "                      regressor_epochs=2, limit=30, output_dir=work / 'overfeat')\n"
        "folder = data.detection_folder('bccd')\n"
        "records = folder.records('test')[:4]\n"
        "images = [folder.image(r) for r in records]\n"
        "found = overfeat.detect(result.system, images, scales=(0.7, 1.0, 2.0), offset_pooling=True,\n"
        "                        score_threshold=result.settings['score_threshold'],\n"
        "                        merge_threshold=result.settings['merge_threshold'],\n"
        "                        preprocess=lambda x: data.preprocess_images(x, 'torch'))\n"
        "metrics = overfeat.detection_ap(found, records, num_classes=3)\n"
        "print(result.windows, {k: result.settings[k] for k in ('score_threshold', 'merge_threshold')})\n"
        "print('mAP', metrics['mAP'], dict(zip(folder.class_names, metrics['ap'])))"
    ),
    new_code_cell(
        "fig, axes = plt.subplots(1, 2, figsize=(11, 4))\n"
        "colours = ['tab:red', 'tab:blue', 'tab:green']\n"
        "for ax, image, record, det in zip(axes, images, records, found):\n"
        "    ax.imshow(image)\n"
        "    for (x1, y1, x2, y2), c in zip(record['boxes'], record['classes']):\n"
        "        ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec=colours[c], ls='--'))\n"
        "    for (x1, y1, x2, y2), c in zip(det['boxes'][:20], det['classes'][:20]):\n"
        "        ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec=colours[c], lw=2))\n"
        "    ax.set_title(f\"{record['id']}: predicted (solid), true (dashed)\"); ax.axis('off')\n"
        "plt.show()"
    ),
    new_markdown_cell(
        "## The measured BCCD run\n\n"
        "`python tools/overfeat_experiments.py --seeds 0,1,2`: the whole train list, 10 "
        "classifier epochs, thresholds chosen on val, the test list evaluated once (3 seeds)."
    ),
    new_code_cell(
        "table = REPO / 'results' / 'overfeat' / 'bccd' / 'README.md'\n"
        "display(Markdown(table.read_text()) if table.exists() else Markdown('(not run yet)'))\n"
        "for picture in sorted((table.parent / 'figures').glob('*.png'))[:2]:\n"
        "    display(Image(filename=str(picture)))"
    ),
]


def main() -> None:
    notebook = new_notebook(cells=CELLS, metadata={
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    })
    path = pathlib.Path(__file__).resolve().parents[1] / "notebooks" / "overfeat.ipynb"
    nbformat.write(notebook, path)
    print(path)


if __name__ == "__main__":
    main()
