"""Writes notebooks/niwt.ipynb (run: python tools/make_niwt_notebook.py), without outputs."""

import pathlib

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS = [
    new_markdown_cell(
        "# NIWT: zero-shot classes from attributes, with explanations\n\n"
        "Selvaraju, Chattopadhyay, Elhoseiny, Sharma, Batra, Parikh, Lee, *Choose Your Neuron: "
        "Incorporating Domain Knowledge through Neuron-Importance*, ECCV 2018. A network trained on "
        "*seen* classes learns classifiers for *unseen* ones from class attributes: (1) neuron "
        "importance (Grad-CAM's channel weights) of seen classes at a layer, (2) a linear map from "
        "attributes to importance, (3) new last-layer weights for each unseen class whose importance "
        "matches the one its attributes predict. The extended network is still one end-to-end "
        "classifier, so Grad-CAM explains its unseen decisions, and the inverse map names the "
        "attributes behind them.\n\n"
        "This notebook runs the steps on CIFAR-10 with the project's class-attribute matrix (cat "
        "and truck unseen), scores GZSL acc_s / acc_u / H, draws explanations, and shows the "
        "committed 3-split table. A few minutes on two CPU cores."
    ),
    new_code_cell(
        "import logging, os, pathlib, tempfile\n"
        "os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # before TensorFlow is imported\n"
        "import numpy as np\n"
        "from IPython.display import Image, Markdown, display\n"
        "import keras_apps\n"
        "from keras_apps import data, niwt, training\n"
        "from keras_apps.niwt.pipeline import load_arrays\n\n"
        "logging.getLogger('tensorflow').setLevel(logging.ERROR)\n"
        "REPO = pathlib.Path(keras_apps.__file__).resolve().parents[1]\n"
        "work = pathlib.Path(tempfile.mkdtemp())"
    ),
    new_markdown_cell(
        "## Class attributes\n\n"
        "CIFAR-10 has no attribute annotations; `niwt.cifar10_attributes()` is the project's "
        "matrix (each value documented in `keras_apps/niwt/data.py`): related classes share "
        "attributes (cat/dog, automobile/truck, deer/horse, airplane/bird/ship), which is what "
        "zero-shot transfer needs."
    ),
    new_code_cell(
        "attributes = niwt.cifar10_attributes()\n"
        "header = '| class | ' + ' | '.join(a.replace('_', ' ') for a in attributes.attribute_names) + ' |'\n"
        "rows = [header, '|---' * (len(attributes.attribute_names) + 1) + '|']\n"
        "for name, row in zip(attributes.class_names, attributes.matrix):\n"
        "    rows.append(f'| {name} | ' + ' | '.join(f'{v:g}' for v in row) + ' |')\n"
        "display(Markdown('\\n'.join(rows)))"
    ),
    new_markdown_cell(
        "## Step 0: the seen-class network\n\n"
        "`vgg_niwt_cifar`: a narrow VGG (three blocks of two 3x3 convolutions, two FC layers), "
        "so the importance at its last convolution `block3_conv2` depends on the image through the "
        "FC layers, as with VGG16 in the paper. Trained on the 8 seen classes."
    ),
    new_code_cell(
        "unseen = [3, 9]                       # cat, truck\n"
        "seen = [c for c in range(10) if c not in unseen]\n"
        "run = training.fit(lambda: niwt.vgg_niwt_cifar(len(seen), widths=(16, 32, 64)), 'cifar10',\n"
        "                   classes=seen, epochs=4, limit=400 * len(seen), batch_size=128,\n"
        "                   output_dir=work / 'seen', verbose=0)\n"
        "backbone = run.model\n"
        "run.metrics['validation']['top1_accuracy']"
    ),
    new_markdown_cell(
        "## Step 1: neuron importance\n\n"
        "alpha_c = mean over positions of d o_c / d A (o_c the pre-softmax score), per image for its "
        "own class; per class the mean. The per-class importance vectors of related classes are "
        "more alike than those of unrelated ones."
    ),
    new_code_cell(
        "images, labels, info = load_arrays('cifar10', 'train', classes=seen, subset='training',\n"
        "                                   validation_fraction=0.1, limit=100 * len(seen))\n"
        "importances = niwt.neuron_importance(backbone, niwt.IMPORTANCE_LAYER, images, labels)\n"
        "classes, means = niwt.class_importance(importances, labels)\n"
        "unit = means / np.linalg.norm(means, axis=1, keepdims=True)\n"
        "names = [attributes.class_names[seen[c]] for c in classes]\n"
        "similar = unit @ unit.T\n"
        "rows = ['| | ' + ' | '.join(names) + ' |', '|---' * (len(names) + 1) + '|']\n"
        "rows += [f'| {n} | ' + ' | '.join(f'{v:.2f}' for v in row) + ' |' for n, row in zip(names, similar)]\n"
        "display(Markdown('cosine between class-mean importances:\\n\\n' + '\\n'.join(rows)))"
    ),
    new_markdown_cell(
        "## Step 2: attributes -> importance\n\n"
        "W_k fitted with the cosine loss, early-stopped when the rank correlation on held-out seen "
        "classes is highest."
    ),
    new_code_cell(
        "mapping = niwt.fit_importance_mapping(attributes.matrix[seen], importances, labels,\n"
        "                                      layer=niwt.IMPORTANCE_LAYER,\n"
        "                                      attribute_names=attributes.attribute_names)\n"
        "held_out = [attributes.class_names[seen[c]] for c in mapping.validation_classes]\n"
        "best = max(h['validation_rank_correlation'] for h in mapping.history)\n"
        "print(f'held out {held_out}: best rank correlation {best:.3f} at step {mapping.best_step}')"
    ),
    new_markdown_cell(
        "## Step 3: unseen-class weights, and the GZSL scores\n\n"
        "The extended model scores all 10 classes (column k = class k). acc_s and acc_u are "
        "per-class mean accuracies over the joint label space, H their harmonic mean; the seen-only "
        "network has acc_u = 0 by construction."
    ),
    new_code_cell(
        "extended = niwt.add_unseen_classes(backbone, attributes.matrix[unseen], mapping, images,\n"
        "                                   lam=1e-3, learning_rate=1e-2, seen_ids=seen, unseen_ids=unseen)\n"
        "metrics = niwt.evaluate(extended, 'cifar10', seen=seen, unseen=unseen, limit=2000)\n"
        "{k: round(metrics[k], 3) for k in ('acc_s', 'acc_u', 'H')}"
    ),
    new_markdown_cell(
        "## Explanations\n\n"
        "Grad-CAM of the decision on test images of the unseen classes, captioned with the "
        "attributes whose importance directions its neurons follow most."
    ),
    new_code_cell(
        "test_images, test_labels, test_info = load_arrays('cifar10', 'test', classes=list(range(10)), limit=200)\n"
        "for class_id in unseen:\n"
        "    index = int(np.flatnonzero(test_labels == class_id)[0])\n"
        "    raw = np.clip(data.denormalize(test_images[index], test_info), 0, 255).astype('uint8')\n"
        "    result = niwt.explain(extended, raw, layer=niwt.IMPORTANCE_LAYER, mapping=mapping,\n"
        "                          attribute_names=attributes.attribute_names,\n"
        "                          class_names=attributes.class_names, top_k=4,\n"
        "                          preprocess=lambda p: data.normalize(p.astype('float32'), test_info),\n"
        "                          path=work / f'explain_{class_id}.png')\n"
        "    print(attributes.class_names[class_id], '->', result['caption'])\n"
        "    display(Image(filename=result['path']))"
    ),
    new_markdown_cell(
        "## The committed CIFAR-10 table\n\n"
        "`tools/niwt_experiments.py`: 3 seen/unseen splits, hyper-parameters of every method chosen "
        "on validation classes carved from the seen ones, the test split scored once; NIWT against "
        "direct attribute regression and ALE on the same network's features, and the lambda sweep."
    ),
    new_code_cell(
        "results = REPO / 'results' / 'niwt' / 'cifar10'\n"
        "display(Markdown((results / 'README.md').read_text()))\n"
        "for picture in sorted((results / 'explanations').glob('*.png')):\n"
        "    display(Image(filename=str(picture)))"
    ),
]


def main() -> None:
    notebook = new_notebook(cells=CELLS, metadata={
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    })
    path = pathlib.Path(__file__).resolve().parents[1] / "notebooks" / "niwt.ipynb"
    nbformat.write(notebook, path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
