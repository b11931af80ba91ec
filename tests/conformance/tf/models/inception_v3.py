"""Inception v3 as a Keras user exports it for serving: keras.applications.InceptionV3 with
random weights (weights=None: nothing is downloaded), written as a SavedModel by model.export,
whose `serving_default` signature takes [None, 299, 299, 3] FP32 and answers the 1000 class
probabilities.

    python inception_v3.py EXPORT_DIR
"""
import sys

import keras


def export(export_dir, seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.applications.InceptionV3(weights=None)
    model.export(export_dir, verbose=False)
    return export_dir


if __name__ == "__main__":
    print(export(sys.argv[1]))
