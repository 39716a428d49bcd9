"""NIWT: "Choose Your Neuron: Incorporating Domain Knowledge through Neuron-Importance"
(Selvaraju et al., ECCV 2018) — generalised zero-shot learning that maps class attributes
onto the neurons of a trained network and explains its decisions.

- :func:`neuron_importance` (step 1: Grad-CAM channel weights per instance at any layer),
  :func:`class_importance`;
- :func:`fit_importance_mapping` -> :class:`ImportanceMapping` (step 2: attributes ->
  importance, cosine loss, early-stopped by rank correlation on held-out seen classes);
- :func:`add_unseen_classes` (step 3: unseen-class weights of the last FC layer whose
  importance matches the predicted one, L2 strength ``lam``): one functional model;
- :func:`gzsl_metrics` (acc_s, acc_u, H), the baselines :class:`AttributeRegression` and
  :class:`ALE`;
- explanations: :func:`grad_cam`, :func:`overlay`, :func:`textual_explanation`,
  :func:`explain` (a captioned picture);
- data: :func:`cifar10_attributes` (the project's documented CIFAR-10 class attributes),
  :func:`load_awa2`, :func:`load_cub`, :func:`load_att_splits` (xlsa17), :func:`zsl_images`;
- :func:`fit` / :func:`evaluate` / :func:`load_run`: the pipeline on a dataset, and the CLI
  ``keras-apps niwt fit|evaluate|explain``.
"""

from keras_apps.niwt.baselines import ALE, AttributeRegression
from keras_apps.niwt.attributes import CIFAR10_ATTRIBUTES, ClassAttributes, cifar10_attributes
from keras_apps.niwt.data import load_att_splits, load_awa2, load_cub, zsl_images
from keras_apps.niwt.explain import explain, grad_cam, overlay, textual_explanation
from keras_apps.niwt.importance import (
    ImportanceMapping,
    class_importance,
    fit_importance_mapping,
    neuron_importance,
    rank_correlation,
)
from keras_apps.niwt.metrics import gzsl_metrics, per_class_accuracy
from keras_apps.niwt.models import IMPORTANCE_LAYER, vgg_niwt_cifar
from keras_apps.niwt.pipeline import NIWTResult, evaluate, fit, load_run
from keras_apps.niwt.transfer import add_unseen_classes, extend_classifier

__all__ = [
    "ALE",
    "AttributeRegression",
    "CIFAR10_ATTRIBUTES",
    "ClassAttributes",
    "IMPORTANCE_LAYER",
    "ImportanceMapping",
    "NIWTResult",
    "add_unseen_classes",
    "cifar10_attributes",
    "class_importance",
    "evaluate",
    "explain",
    "extend_classifier",
    "fit",
    "fit_importance_mapping",
    "grad_cam",
    "gzsl_metrics",
    "load_att_splits",
    "load_awa2",
    "load_cub",
    "load_run",
    "neuron_importance",
    "overlay",
    "per_class_accuracy",
    "rank_correlation",
    "textual_explanation",
    "vgg_niwt_cifar",
    "zsl_images",
]
