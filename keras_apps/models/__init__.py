"""Architecture families, one module per family; importing this package registers them."""

from keras_apps.models import nin, resnet, vgg  # noqa: F401
from keras_apps.models import alexnet, densenet, efficientnet, googlenet, senet  # noqa: F401
from keras_apps.models import resnet_dcn  # noqa: F401
